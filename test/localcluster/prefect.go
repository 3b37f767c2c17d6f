package localcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/flowauth/flowauth/internal/image"
)

// Prefect 3 as its users run it, from the venv `hack/tools.sh prefect` installs (bin/prefect):
// a `prefect server start` on this machine with its own SQLite database, reached by the node's
// pods at the node's bridge address, and `prefect worker start --type kubernetes` workers that
// create flow-run Jobs in the cluster. Nothing here imitates Prefect: every call is its CLI or
// its REST API.
type Prefect struct {
	// URL is the server's API, as the worker and the flow-run pods reach it.
	URL string
	// Dir holds the server's home (database, settings) and the processes' logs.
	Dir string

	bin    string // bin/prefect/venv/bin
	server *exec.Cmd
	procs  []*exec.Cmd
}

// FlowRunImageRepository is the Prefect 3 flow-run image: Debian's Python with the pinned Prefect,
// prefect-aws and prefect-gcp, and examples/prefect3's flows in its working directory.
const FlowRunImageRepository = "flowauth/prefect3-flow-run"

// FlowsDir is where the flow-run image holds examples/prefect3 (its working directory).
const FlowsDir = "/opt/flows"

// PrefectVenv is the venv of `hack/tools.sh prefect` below repoRoot.
func PrefectVenv(repoRoot string) string { return filepath.Join(repoRoot, "bin", "prefect", "venv") }

// StartPrefect starts a Prefect server listening on host (the node's bridge address, so that
// pods reach it) with its state in dir, and returns once its API answers.
func StartPrefect(ctx context.Context, repoRoot, dir, host string) (*Prefect, error) {
	bin := filepath.Join(PrefectVenv(repoRoot), "bin")
	if _, err := os.Stat(filepath.Join(bin, "prefect")); err != nil {
		return nil, fmt.Errorf("prefect not found in %s: run `hack/tools.sh prefect` (make test-node and make demo do): %w", bin, err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "home"), 0o750); err != nil {
		return nil, err
	}
	port, err := freePortOn(host)
	if err != nil {
		return nil, err
	}
	p := &Prefect{URL: "http://" + net.JoinHostPort(host, strconv.Itoa(port)) + "/api", Dir: dir, bin: bin}
	p.server, err = p.start(ctx, "server", nil, "server", "start", "--host", host, "--port", strconv.Itoa(port))
	if err != nil {
		return nil, err
	}
	err = waitFor(ctx, 2*time.Minute, "the Prefect server at "+p.URL, func() error {
		if p.server.ProcessState != nil {
			return stopWaiting{fmt.Errorf("it exited: %s", p.Log("server"))}
		}
		_, err := p.api(ctx, http.MethodGet, "/health", nil)
		return err
	})
	if err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

// env is what every Prefect process here runs with: the server's API, its own home, no
// analytics and no update checks (nothing leaves this machine), and nothing else of this
// process's environment that Prefect would read.
func (p *Prefect) env(extra ...string) []string {
	env := []string{
		"PATH=" + p.bin + ":/usr/local/bin:/usr/bin:/bin",
		"HOME=" + filepath.Join(p.Dir, "home"),
		"PREFECT_HOME=" + filepath.Join(p.Dir, "home"),
		"PREFECT_API_URL=" + p.URL,
		"PREFECT_SERVER_ANALYTICS_ENABLED=false",
		"DO_NOT_TRACK=1",
		"PREFECT_CLI_COLORS=false",
		"PREFECT_CLI_WRAP_LINES=false",
		"COLUMNS=250",
	}
	return append(env, extra...)
}

// Command is the prefect CLI with args, run in dir (the project folder, for `prefect deploy`).
func (p *Prefect) Command(ctx context.Context, dir string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(p.bin, "prefect"), args...)
	cmd.Env, cmd.Dir = p.env(), dir
	return cmd
}

// Run runs the prefect CLI and returns what it printed; an error carries that output.
func (p *Prefect) Run(ctx context.Context, dir string, args ...string) (string, error) {
	out, err := p.Command(ctx, dir, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("prefect %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// StartWorker starts `prefect worker start --type kubernetes` for pool against kubeconfig, with
// env added (its Prefect settings: the worker copies what it sets explicitly into every flow-run
// pod, so it is kept to what the worker needs). Its output goes to Log(name).
func (p *Prefect) StartWorker(ctx context.Context, name, pool, kubeconfig string, env ...string) error {
	_, err := p.start(ctx, name, append([]string{"KUBECONFIG=" + kubeconfig}, env...),
		"worker", "start", "--pool", pool, "--type", "kubernetes", "--name", name)
	return err
}

// start runs the prefect CLI in the background with env added, in its own process group (the
// server and the worker start processes of their own), its output in Log(name).
func (p *Prefect) start(ctx context.Context, name string, env []string, args ...string) (*exec.Cmd, error) {
	log, err := os.Create(filepath.Join(p.Dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(p.bin, "prefect"), args...)
	cmd.Env, cmd.Dir = p.env(env...), p.Dir
	if args[0] == "worker" {
		cmd.Env = append(p.UserEnv(), env...)
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Start(); err != nil {
		_ = log.Close()
		return nil, err
	}
	go func() { _ = cmd.Wait(); _ = log.Close() }()
	p.procs = append(p.procs, cmd)
	return cmd, nil
}

// UserEnv is what a user's shell has for the prefect CLI against this server: the venv's prefect
// first on the PATH, the API's address, and a home of its own through HOME (~/.prefect), not
// PREFECT_HOME, a path of this machine: a worker copies the Prefect settings it runs with into
// every flow-run pod.
func (p *Prefect) UserEnv() []string {
	return []string{"PATH=" + p.bin + ":/usr/local/bin:/usr/bin:/bin", "HOME=" + filepath.Join(p.Dir, "home"),
		"PREFECT_API_URL=" + p.URL, "DO_NOT_TRACK=1"}
}

// Log is what the named process (server, or a worker's name) has printed so far.
func (p *Prefect) Log(name string) string {
	b, _ := os.ReadFile(filepath.Join(p.Dir, name+".log"))
	return string(b)
}

// StopWorker stops the named worker (and what it started).
func (p *Prefect) StopWorker(name string) {
	for _, cmd := range p.procs {
		if len(cmd.Args) > 0 && strings.Contains(strings.Join(cmd.Args, " "), "--name "+name) {
			stopGroup(cmd)
		}
	}
}

// Stop stops the workers, then the server, each with its process group.
func (p *Prefect) Stop() {
	for i := len(p.procs) - 1; i >= 0; i-- {
		stopGroup(p.procs[i])
	}
}

// stopGroup sends SIGINT to cmd's process group, then SIGKILL after 10 s.
func stopGroup(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	pgid := cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGINT)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && syscall.Kill(-pgid, 0) == nil {
		time.Sleep(100 * time.Millisecond)
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// api calls the server's REST API and returns the body of a 2xx answer.
func (p *Prefect) api(ctx context.Context, method, path string, body any) ([]byte, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.URL+path, r)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, b)
	}
	return b, nil
}

// FlowRun is what the Prefect API says of a flow run.
type FlowRun struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	State struct {
		Type      string `json:"type"` // SCHEDULED, PENDING, RUNNING, COMPLETED, FAILED, CRASHED, ...
		Name      string `json:"name"` // Pending, InfrastructurePending, Completed, ...
		Message   string `json:"message"`
		Timestamp string `json:"timestamp"`
	} `json:"state"`
	InfrastructurePID string `json:"infrastructure_pid"`
}

// Final says whether the run's state is terminal.
func (r FlowRun) Final() bool {
	switch r.State.Type {
	case "COMPLETED", "FAILED", "CRASHED", "CANCELLED":
		return true
	}
	return false
}

// FlowRun reads a flow run.
func (p *Prefect) FlowRun(ctx context.Context, id string) (FlowRun, error) {
	var r FlowRun
	b, err := p.api(ctx, http.MethodGet, "/flow_runs/"+id, nil)
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal(b, &r)
}

// WaitFlowRun polls a flow run until its state is terminal or timeout passes, and returns the
// last state read either way (with an error for the timeout).
func (p *Prefect) WaitFlowRun(ctx context.Context, id string, timeout time.Duration) (FlowRun, error) {
	var last FlowRun
	err := waitFor(ctx, timeout, "flow run "+id+" to end", func() error {
		r, err := p.FlowRun(ctx, id)
		if err != nil {
			return err
		}
		last = r
		if !r.Final() {
			return fmt.Errorf("%s (%s) %q", r.State.Name, r.State.Type, r.State.Message)
		}
		return nil
	})
	return last, err
}

// Logs are the messages the flow run logged to the API (its own, its worker's and the
// observer's), oldest first.
func (p *Prefect) Logs(ctx context.Context, id string) ([]string, error) {
	b, err := p.api(ctx, http.MethodPost, "/logs/filter", map[string]any{
		"logs": map[string]any{"flow_run_id": map[string]any{"any_": []string{id}}}, "sort": "TIMESTAMP_ASC", "limit": 200,
	})
	if err != nil {
		return nil, err
	}
	var logs []struct {
		Message string `json:"message"`
	}
	if err := json.Unmarshal(b, &logs); err != nil {
		return nil, err
	}
	var out []string
	for _, l := range logs {
		out = append(out, l.Message)
	}
	return out, nil
}

// CreateFlowRun starts a deployment's run (`prefect deployment run`), with job variables as
// `--job-variable KEY=JSON` and the flow's parameters as `--param KEY=JSON`, and returns its id.
func (p *Prefect) CreateFlowRun(ctx context.Context, dir, deployment string, jobVariables, params map[string]any) (string, error) {
	args := []string{"deployment", "run", deployment}
	for flag, values := range map[string]map[string]any{"--job-variable": jobVariables, "--param": params} {
		for k, v := range values {
			b, err := json.Marshal(v)
			if err != nil {
				return "", err
			}
			args = append(args, flag, k+"="+string(b))
		}
	}
	out, err := p.Run(ctx, dir, args...)
	if err != nil {
		return "", err
	}
	// "└── UUID: 0b8e..." in the CLI's summary.
	for line := range strings.Lines(out) {
		if _, id, ok := strings.Cut(line, "UUID:"); ok {
			return strings.TrimSpace(id), nil
		}
	}
	return "", errors.New("prefect deployment run printed no flow run UUID:\n" + out)
}

// PrefectFlowRunImage builds the Prefect 3 flow-run image and pushes it to the node's
// registry, once per cluster: the probe image's Debian (its python3 is the venv's minor),
// bin/prefect's flow-run layer (the same packages under /opt/prefect, on PATH) and
// examples/prefect3 as its working directory. No registry is pulled from.
func (c *Cluster) PrefectFlowRunImage(ctx context.Context) (string, error) {
	if c.prefectImage != "" {
		return c.prefectImage, nil
	}
	if c.node == nil {
		return "", errors.New("the Prefect flow-run image needs the node's registry")
	}
	root := c.opts.RepoRoot
	var layers []any
	for _, f := range []string{filepath.Join(root, "bin", "probe-rootfs.tar.gz"), filepath.Join(root, "bin", "prefect", "flow-run-layer.tar.gz")} {
		l, err := tarball.LayerFromFile(f, tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return "", fmt.Errorf("%s (hack/tools.sh probe-rootfs and prefect build it): %w", f, err)
		}
		layers = append(layers, l)
	}
	flows, err := os.ReadDir(filepath.Join(root, "examples", "prefect3"))
	if err != nil {
		return "", err
	}
	for _, f := range flows {
		layers = append(layers, image.FileLayer{Path: FlowsDir[1:] + "/" + f.Name(), Src: filepath.Join(root, "examples", "prefect3", f.Name()), Mode: 0o644})
	}
	img, err := image.Of(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}, v1.Config{
		Cmd:        []string{"prefect", "flow-run", "execute"},
		WorkingDir: FlowsDir,
		Env: []string{
			"PATH=/opt/prefect/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			// As in the probe image: a flow run's root filesystem may be read-only.
			"PYTHONDONTWRITEBYTECODE=1",
			"PREFECT_HOME=/tmp/prefect",
		},
	}, layers...)
	if err != nil {
		return "", err
	}
	ref := c.node.registry + "/" + FlowRunImageRepository + ":" + ImageTag
	if err := push(ctx, ref, img); err != nil {
		return "", fmt.Errorf("pushing the Prefect flow-run image: %w", err)
	}
	c.prefectImage = ref
	return ref, nil
}

// CreateWorkPool creates a work pool of type kubernetes from the worker's own default base job
// template (`prefect work-pool get-default-base-job-template --type kubernetes`), changed only
// where a platform team changes it: the flow-run image, and the namespace when one is given.
// The template is kept in Dir as base-job-template.json.
func (p *Prefect) CreateWorkPool(ctx context.Context, name, image, namespace string) error {
	out, err := p.Run(ctx, p.Dir, "work-pool", "get-default-base-job-template", "--type", "kubernetes")
	if err != nil {
		return err
	}
	var template struct {
		JobConfiguration map[string]any `json:"job_configuration"`
		Variables        struct {
			Properties map[string]map[string]any `json:"properties"`
		} `json:"variables"`
	}
	var whole map[string]any
	if err := json.Unmarshal([]byte(out), &whole); err != nil {
		return fmt.Errorf("the default base job template: %w\n%s", err, out)
	}
	if err := json.Unmarshal([]byte(out), &template); err != nil {
		return err
	}
	for variable, value := range map[string]string{"image": image, "namespace": namespace} {
		if value == "" {
			continue
		}
		prop, ok := template.Variables.Properties[variable]
		if !ok {
			return fmt.Errorf("the default base job template has no %q variable", variable)
		}
		prop["default"] = value
	}
	whole["variables"].(map[string]any)["properties"] = template.Variables.Properties
	b, err := json.MarshalIndent(whole, "", "  ")
	if err != nil {
		return err
	}
	file := filepath.Join(p.Dir, "base-job-template.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		return err
	}
	_, err = p.Run(ctx, p.Dir, "work-pool", "create", name, "--type", "kubernetes", "--base-job-template", file)
	return err
}

// Deploy copies examples/prefect3 into Dir/project, as a user's own project folder, and runs
// `prefect --no-prompt deploy` there with args (none: --all); it returns the folder.
func (p *Prefect) Deploy(ctx context.Context, repoRoot string, args ...string) (string, error) {
	project := filepath.Join(p.Dir, "project")
	if _, err := os.Stat(project); err != nil {
		if out, err := exec.CommandContext(ctx, "cp", "-r", filepath.Join(repoRoot, "examples", "prefect3"), project).CombinedOutput(); err != nil {
			return "", fmt.Errorf("cp: %w: %s", err, out)
		}
	}
	if len(args) == 0 {
		args = []string{"--all"}
	}
	_, err := p.Run(ctx, project, append([]string{"--no-prompt", "deploy"}, args...)...)
	return project, err
}
