package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// run runs the plugin as kubectl would, with stdin, and returns stdout, stderr and the exit code.
func run(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := newRootCommand(genericiooptions.IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut})
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	var exit exitError
	switch {
	case errors.As(err, &exit):
		return out.String(), errOut.String(), exit.code
	case err != nil:
		return out.String(), errOut.String() + err.Error(), 2
	}
	return out.String(), errOut.String(), 0
}

// TestOfflineCommands: render, check and explain on the examples and test manifests, offline,
// with the exit codes CI relies on.
func TestOfflineCommands(t *testing.T) {
	stdin, err := os.ReadFile("../../examples/prefect2-flow-run-job.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		args      []string
		code      int
		stdout    []string
		stderr    []string
		notStdout []string
	}{
		{name: "render shows what a Job's pods get", args: []string{"render", "-f", "../../examples/prefect1-flow-run-job.yaml"},
			stdout: []string{"kind: Job", "flowauth.io/status: injected=AWS_CREDENTIALS,GCP_CREDENTIALS", "name: AWS_ACCESS_KEY_ID", "mountPath: /var/run/secrets/flowauth/gcp-credentials"}},
		{name: "render reads standard input", args: []string{"render", "-f", "-"},
			stdout: []string{"flowauth.io/status: injected=GITHUB_ACCESS_TOKEN,AWS_CREDENTIALS; layers=native", "name: GITHUB_ACCESS_TOKEN"}, notStdout: []string{"PREFECT__CONTEXT__SECRETS__"}},
		{name: "render warns as kubectl does", args: []string{"render", "-f", "testdata/warned.yaml"},
			stderr: []string{`Warning: flowauth: container "flow": env AWS_ACCESS_KEY_ID is already set by the pod`}},
		{name: "render: a denial is an error and exit 1", args: []string{"render", "-f", "testdata/denied.yaml"}, code: 1,
			stderr: []string{`Error from server (Forbidden): Pod bad-name: admission webhook denied the request: flowauth: annotation flowauth.io/secrets: entry "aws-credentials" is not a valid secret name`}},
		{name: "render with namespace defaults", args: []string{"render", "--namespace-defaults", "GITLAB_ACCESS_TOKEN", "-f", "-"},
			stdout: []string{"injected=GITHUB_ACCESS_TOKEN,AWS_CREDENTIALS,GITLAB_ACCESS_TOKEN"}},
		{name: "check passes the examples", args: []string{"check", "-f", "../../examples"},
			stderr: []string{"6 objects, 2 flow-run pod templates: 0 denied, 0 warnings"}},
		{name: "check: one line per finding, exit 1 on a denial", args: []string{"check", "-f", "testdata/denied.yaml", "-f", "testdata/warned.yaml"}, code: 1,
			stdout: []string{"testdata/denied.yaml: Pod flows/bad-name: denied: flowauth: annotation flowauth.io/secrets: entry \"aws-credentials\"",
				"testdata/warned.yaml: Job flows/keeps-its-own-key: warning: flowauth: container \"flow\": env AWS_ACCESS_KEY_ID is already set"}},
		{name: "check: warnings pass without --strict", args: []string{"check", "-f", "testdata/warned.yaml"}},
		{name: "check --strict: warnings fail", args: []string{"check", "--strict", "-f", "testdata/warned.yaml"}, code: 1},
		{name: "check a Prefect 3 work pool's job template", args: []string{"check", "--work-pool", "testdata/work-pool.json"},
			stderr: []string{"1 objects, 1 flow-run pod templates: 0 denied, 0 warnings"}},
		{name: "render a work pool's job template", args: []string{"render", "--work-pool", "testdata/work-pool.json"},
			stdout: []string{"generateName: '{{ name }}-'", "flowauth.io/status: injected=AWS_CREDENTIALS,GITHUB_ACCESS_TOKEN; layers=native"}},
		{name: "explain a name", args: []string{"explain", "GCP_CREDENTIALS"},
			stdout: []string{"Secret:   gcp-credentials", "env  PREFECT__CONTEXT__SECRETS__GCP_CREDENTIALS", "file /var/run/secrets/flowauth/gcp-credentials/credentials.json",
				"kubectl create secret generic gcp-credentials -n <namespace> --from-file=credentials.json=<path>"}},
		{name: "explain a custom name", args: []string{"explain", "MY_TOKEN"}, stdout: []string{"MY_TOKEN (not in the secret map", "Secret:   my-token", "PREFECT__CONTEXT__SECRETS__MY_TOKEN", "native layer:\n    (nothing)"}},
		{name: "explain lists every name", args: []string{"explain"}, stdout: []string{"AWS_CREDENTIALS ", "SNOWFLAKE_CREDS ", "GITHUB_ACCESS_TOKEN "}},
		{name: "explain refuses a malformed name", args: []string{"explain", "aws"}, code: 2, stderr: []string{"aws"}},
		{name: "nothing to read", args: []string{"check"}, code: 2, stderr: []string{"nothing to read"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := run(t, string(stdin), tc.args...)
			if code != tc.code {
				t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, out, errOut)
			}
			for _, want := range tc.stdout {
				if !strings.Contains(out, want) {
					t.Errorf("stdout lacks %q:\n%s", want, out)
				}
			}
			for _, want := range tc.stderr {
				if !strings.Contains(errOut, want) {
					t.Errorf("stderr lacks %q:\n%s", want, errOut)
				}
			}
			for _, unwanted := range tc.notStdout {
				if strings.Contains(out, unwanted) {
					t.Errorf("stdout has %q:\n%s", unwanted, out)
				}
			}
		})
	}
}
