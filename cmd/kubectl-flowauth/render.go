package main

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flowauth/flowauth/pkg/mutate"
	"github.com/flowauth/flowauth/pkg/render"
	"github.com/flowauth/flowauth/pkg/secretmap"
)

// clusterOptions say which cluster render and check emulate.
type clusterOptions struct {
	files             []string
	workPools         []string
	secretMap         string
	namespaceDefaults string
	fromCluster       bool
	release           string
	releaseNamespace  string
}

func (o *clusterOptions) addFlags(cmd *cobra.Command) {
	cmd.Flags().StringSliceVarP(&o.files, "filename", "f", nil, "manifests to read: a file, a folder of .yaml/.yml/.json files, or - for standard input")
	cmd.Flags().StringSliceVar(&o.workPools, "work-pool", nil, "a Prefect 2/3 work pool's base job template (JSON): its job_configuration.job_manifest is read as a Job")
	cmd.Flags().StringVar(&o.secretMap, "secret-map", "", "the webhook's secret map file (its chart value secretMap), extending the built-in map")
	cmd.Flags().StringVar(&o.namespaceDefaults, "namespace-defaults", "", "the flowauth.io/secrets annotation of the namespaces the objects go to (e.g. \"AWS_CREDENTIALS\")")
	cmd.Flags().BoolVar(&o.fromCluster, "cluster", false, "read the namespaces' defaults, the webhook's secret map and settings, and which Secret keys exist from the current cluster (read-only; no value is kept or printed)")
	cmd.Flags().StringVar(&o.release, "release", "flowauth", "with --cluster or doctor: the Helm release; its objects are named as the chart names them (RELEASE if it holds \"flowauth\", else RELEASE-flowauth), and an install whose objects are named otherwise (kustomize) is found by its pod webhook")
	cmd.Flags().StringVar(&o.releaseNamespace, "release-namespace", "flowauth-system", "with --cluster or doctor: the namespace flowauth is installed in")
}

// emulated is what render needs, and notes for the user about how it was obtained.
type emulated struct {
	render.Cluster
	notes []string
}

// cluster builds the emulated cluster: offline from flags, or read from the live cluster.
func (o *clusterOptions) cluster(ctx context.Context, flags *genericclioptions.ConfigFlags, docs []document) (*emulated, error) {
	e := &emulated{}
	ns, _, err := flags.ToRawKubeConfigLoader().Namespace()
	if err != nil || ns == "" {
		ns = "default"
	}
	e.Namespace = ns
	e.Map = secretmap.Builtin()
	if o.secretMap != "" {
		if e.Map, err = secretmap.LoadFile(o.secretMap); err != nil {
			return nil, err
		}
	}
	namespaces := map[string]bool{ns: true}
	for _, d := range docs {
		if meta, ok := d.object["metadata"].(map[string]any); ok {
			if n, ok := meta["namespace"].(string); ok && n != "" {
				namespaces[n] = true
			}
		}
	}
	e.NamespaceDefaults = map[string]string{}
	if !o.fromCluster {
		for n := range namespaces {
			e.NamespaceDefaults[n] = o.namespaceDefaults
		}
		return e, nil
	}
	c, err := newClient(flags)
	if err != nil {
		return nil, err
	}
	// The webhook's own settings, from its Deployment's arguments.
	var deploy appsv1.Deployment
	lookup, missing := "none", "warn"
	in := findInstallation(ctx, c, o.release, o.releaseNamespace)
	if err := c.Get(ctx, types.NamespacedName{Namespace: in.namespace, Name: in.deployment}, &deploy); err == nil && len(deploy.Spec.Template.Spec.Containers) > 0 {
		for _, a := range deploy.Spec.Template.Spec.Containers[0].Args {
			if v, ok := strings.CutPrefix(a, "--secret-lookup="); ok {
				lookup = v
			}
			if v, ok := strings.CutPrefix(a, "--missing-secret="); ok {
				missing = v
			}
			if a == "--require-allow-list" || a == "--require-allow-list=true" {
				e.RequireAllowList = true
			}
		}
	} else {
		e.notes = append(e.notes, fmt.Sprintf("no Deployment %s/%s: emulating a webhook with default settings", in.namespace, in.deployment))
	}
	var cm corev1.ConfigMap
	if o.secretMap == "" {
		if err := c.Get(ctx, types.NamespacedName{Namespace: in.namespace, Name: fullname(o.release) + "-secret-map"}, &cm); err == nil {
			if e.Map, err = secretmap.Parse([]byte(cm.Data["secret-map.yaml"])); err != nil {
				return nil, fmt.Errorf("the webhook's secret map (ConfigMap %s/%s-secret-map): %w", in.namespace, fullname(o.release), err)
			}
		}
	}
	keys := clusterKeys{}
	for n := range namespaces {
		var namespace corev1.Namespace
		if err := c.Get(ctx, types.NamespacedName{Name: n}, &namespace); err == nil {
			e.NamespaceDefaults[n] = namespace.Annotations[mutate.AnnotationSecrets]
			if e.NamespaceAnnotations == nil {
				e.NamespaceAnnotations = map[string]map[string]string{}
			}
			e.NamespaceAnnotations[n] = namespace.Annotations
		}
		if keys[n], err = readKeys(ctx, c, n); err != nil {
			return nil, err
		}
	}
	e.Keys, e.Missing = keys, mutate.MissingPolicy(missing)
	if lookup != "keys" {
		e.Missing = mutate.MissingWarn
		e.notes = append(e.notes, "the webhook does not look up Secret keys (--secret-lookup=none): the missing-Secret warnings here are render's own; "+
			"in the cluster such a pod is admitted and its container fails with CreateContainerConfigError")
	}
	return e, nil
}

// clusterKeys is which Secret and ConfigMap keys exist, per namespace: names only.
type clusterKeys map[string]*mutate.StaticKeys

func (k clusterKeys) SecretKeys(namespace, name string) ([]string, bool) {
	if s := k[namespace]; s != nil {
		return s.SecretKeys(namespace, name)
	}
	return nil, false
}

func (k clusterKeys) SecretType(namespace, name string) string {
	if s := k[namespace]; s != nil {
		return s.SecretType(namespace, name)
	}
	return ""
}

func (k clusterKeys) ConfigMapKeys(namespace, name string) ([]string, bool) {
	if s := k[namespace]; s != nil {
		return s.ConfigMapKeys(namespace, name)
	}
	return nil, false
}

// readKeys lists the namespace's Secrets and ConfigMaps and keeps their key names only: the
// values arrive in the list, as they do for the webhook's key cache, and are dropped here at once.
func readKeys(ctx context.Context, c client.Client, namespace string) (*mutate.StaticKeys, error) {
	k := &mutate.StaticKeys{Secrets: map[string][]string{}, ConfigMaps: map[string][]string{}, Types: map[string]string{}}
	var secrets corev1.SecretList
	if err := c.List(ctx, &secrets, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("listing Secrets in %s (to know which keys exist): %w", namespace, err)
	}
	for i := range secrets.Items {
		k.Secrets[secrets.Items[i].Name] = sortedKeys(secrets.Items[i].Data)
		k.Types[secrets.Items[i].Name] = string(secrets.Items[i].Type)
		secrets.Items[i].Data, secrets.Items[i].StringData = nil, nil
	}
	var cms corev1.ConfigMapList
	if err := c.List(ctx, &cms, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("listing ConfigMaps in %s: %w", namespace, err)
	}
	for _, cm := range cms.Items {
		names := sortedKeys(cm.BinaryData)
		for key := range cm.Data {
			names = append(names, key)
		}
		slices.Sort(names)
		k.ConfigMaps[cm.Name] = names
	}
	return k, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func newClient(flags *genericclioptions.ConfigFlags) (client.Client, error) {
	cfg, err := flags.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	return client.New(cfg, client.Options{})
}

// renderAll reads the inputs and renders each object.
func renderAll(ctx context.Context, flags *genericclioptions.ConfigFlags, o *clusterOptions, streams genericiooptions.IOStreams) ([]document, []*render.Object, error) {
	if len(o.files) == 0 && len(o.workPools) == 0 {
		return nil, nil, fmt.Errorf("nothing to read: give -f FILE|DIR|- or --work-pool FILE")
	}
	docs, err := readInputs(o.files, streams.In)
	if err != nil {
		return nil, nil, err
	}
	for _, p := range o.workPools {
		d, err := readWorkPool(p)
		if err != nil {
			return nil, nil, err
		}
		docs = append(docs, d)
	}
	e, err := o.cluster(ctx, flags, docs)
	if err != nil {
		return nil, nil, err
	}
	for _, n := range e.notes {
		fprintf(streams.ErrOut, "note: %s\n", n)
	}
	objects := make([]*render.Object, len(docs))
	for i, d := range docs {
		if objects[i], err = render.Render(ctx, d.object, e.Cluster); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", d.file, err)
		}
	}
	return docs, objects, nil
}

func newRenderCommand(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &clusterOptions{}
	cmd := &cobra.Command{
		Use:   "render -f FILE|DIR|-",
		Short: "Print manifests as they will be stored after flowauth's admission",
		Long: `Print every object as it will be stored after admission: a Pod with what flowauth injects, and
any object with a pod template (Job, CronJob, Deployment, ...) with the template showing what its pods
will get. Warnings go to stderr as kubectl prints them; a denial is an error and makes the exit code 1.

Offline by default: the built-in secret map (or --secret-map) and --namespace-defaults stand for the
cluster. With --cluster, the namespaces' defaults, the webhook's secret map and settings, and which
Secret keys exist are read from the current cluster.`,
		Example: `  # What will the Prefect 1 agent's Job give its pods?
  kubectl flowauth render -f examples/prefect1-flow-run-job.yaml

  # The same, for the namespace's defaults and the Secrets that exist there
  kubectl flowauth render -n flows --cluster -f flow-run-job.yaml`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, objects, err := renderAll(cmd.Context(), flags, o, streams)
			if err != nil {
				return err
			}
			denied := false
			for _, obj := range objects {
				for _, t := range obj.Templates {
					for _, w := range t.Warnings {
						fprintf(streams.ErrOut, "Warning: %s\n", w)
					}
					if t.Denial != "" {
						denied = true
						fprintf(streams.ErrOut, "Error from server (Forbidden): %s %s: admission webhook denied the request: %s\n", obj.Kind, obj.Name, t.Denial)
					}
				}
				b, err := toYAML(obj.Rendered)
				if err != nil {
					return err
				}
				_, _ = streams.Out.Write(b)
			}
			if denied {
				return exitError{1}
			}
			return nil
		},
	}
	o.addFlags(cmd)
	return cmd
}

func newCheckCommand(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &clusterOptions{}
	var strict bool
	cmd := &cobra.Command{
		Use:   "check -f FILE|DIR|- [--work-pool base-job-template.json]",
		Short: "Check manifests for CI: one line per finding; exit 1 on a denial (or any warning with --strict)",
		Long: `Check that flow-run manifests will be admitted, as flowauth decides: one line per finding, naming the
file, the object and what is wrong; exit code 1 on any denial, and on any warning with --strict.

Prefect 2/3 declare their Job in a work pool's base job template: --work-pool reads its
job_configuration.job_manifest (values that are only a template variable, like "{{ image }}", are
skipped). Settings come from flags, or from the cluster with --cluster, as for render.`,
		Example: `  # In CI: every manifest of a GitOps repository, warnings fail too
  kubectl flowauth check --strict -f deploy/

  # A Prefect 3 work pool's job template
  prefect work-pool inspect my-pool --output json > pool.json  # or the UI's JSON
  kubectl flowauth check --work-pool pool.json`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			docs, objects, err := renderAll(cmd.Context(), flags, o, streams)
			if err != nil {
				return err
			}
			denials, warnings, flowRuns, optedOut := 0, 0, 0, 0
			for i, obj := range objects {
				where := fmt.Sprintf("%s: %s %s/%s", docs[i].file, obj.Kind, obj.Namespace, obj.Name)
				for _, t := range obj.Templates {
					if t.FlowRun {
						flowRuns++
					}
					if t.Status == mutate.StatusOptedOut {
						optedOut++
						fprintf(streams.Out, "%s: opted out (%s: %q): its pods are left as they come\n", where, mutate.AnnotationInject, mutate.InjectFalse)
					}
					for _, w := range t.Warnings {
						warnings++
						fprintf(streams.Out, "%s: warning: %s\n", where, w)
					}
					if t.Denial != "" {
						denials++
						fprintf(streams.Out, "%s: denied: %s\n", where, t.Denial)
					}
				}
			}
			summary := fmt.Sprintf("%d objects, %d flow-run pod templates: %d denied, %d warnings", len(objects), flowRuns, denials, warnings)
			if optedOut > 0 {
				summary += fmt.Sprintf(", %d opted out", optedOut)
			}
			fprintf(streams.ErrOut, "%s\n", summary)
			if denials > 0 || (strict && warnings > 0) {
				return exitError{1}
			}
			return nil
		},
	}
	o.addFlags(cmd)
	cmd.Flags().BoolVar(&strict, "strict", false, "exit 1 on warnings too")
	return cmd
}
