package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/flowauth/flowauth/pkg/policy"
	"github.com/flowauth/flowauth/pkg/secretmap"
)

// newPolicyCommand is `kubectl flowauth policy`: flowauth compiled into admission policies that
// the API server runs itself (Kubernetes 1.36+), printed for kubectl apply.
func newPolicyCommand(streams genericiooptions.IOStreams) *cobra.Command {
	var secretMapFile, name, selector string
	var requireList, nsDefaults bool
	var skip []string
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Print flowauth as admission policies the API server runs itself (Kubernetes 1.36+), for kubectl apply",
		Long: `policy prints flowauth compiled into admission policies that the API server runs itself
(admissionregistration.k8s.io/v1, Kubernetes 1.36 or later), for the secret map in force: a
MutatingAdmissionPolicy that injects flow-run pods with no webhook in their path, a
ValidatingAdmissionPolicy that refuses what the webhook refuses (with its messages, allow-lists
included), one that refuses a Job whose pods it would refuse, and their bindings. It serves the
namespaces labelled flowauth.io/injection=enabled, as the chart does; the chart's
admission.mode=policy installs the same for the built-in map.

What differs from the webhook (key lookup, warnings and Events need the webhook) and what each mode
costs: docs/reference.md, "Policy mode: no webhook in the pod's path".`,
		Example: `  kubectl flowauth policy | kubectl apply --server-side -f -
  kubectl flowauth policy --secret-map secret-map.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m := secretmap.Builtin()
			if secretMapFile != "" {
				var err error
				if m, err = secretmap.LoadFile(secretMapFile); err != nil {
					return err
				}
			}
			sel, err := metav1.ParseToLabelSelector(selector)
			if err != nil {
				return fmt.Errorf("--namespace-selector %q: %w", selector, err)
			}
			o := policy.Options{Name: name, SkipContainers: skip, NamespaceSelector: sel, RequireAllowList: requireList, IgnoreNamespaceDefaults: !nsDefaults}
			p, err := policy.Compile(m, o)
			if err != nil {
				return err
			}
			var docs []string
			for _, obj := range p.Objects() {
				b, err := yamlMarshal(obj)
				if err != nil {
					return err
				}
				docs = append(docs, string(b))
			}
			_, err = streams.Out.Write([]byte(strings.Join(docs, "---\n")))
			return err
		},
	}
	cmd.Flags().StringVar(&secretMapFile, "secret-map", "", "a secret map file extending the built-in one (the chart's secretMap value)")
	cmd.Flags().StringVar(&name, "name", "flowauth", "prefix of the objects' names (the chart's release name)")
	cmd.Flags().StringVar(&selector, "namespace-selector", "flowauth.io/injection=enabled", "label selector of the namespaces served (the chart's webhook.namespaceSelector); flowauth-system and kube-system never are")
	cmd.Flags().BoolVar(&requireList, "require-allow-list", false, "inject nothing in a namespace without flowauth.io/allowed-secrets (the chart's policy.requireAllowList)")
	cmd.Flags().BoolVar(&nsDefaults, "namespace-defaults", true, "read a Namespace's flowauth.io/secrets defaults (the chart's namespaceDefaults)")
	cmd.Flags().StringSliceVar(&skip, "skip-containers", nil, "containers never injected unless a pod names them (default: the webhook's, the common mesh proxies)")
	return cmd
}
