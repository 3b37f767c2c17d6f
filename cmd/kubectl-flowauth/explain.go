package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/flowauth/flowauth/pkg/mutate"
	"github.com/flowauth/flowauth/pkg/render"
	"github.com/flowauth/flowauth/pkg/secretmap"
)

func newExplainCommand(streams genericiooptions.IOStreams) *cobra.Command {
	var secretMapFile string
	cmd := &cobra.Command{
		Use:   "explain [NAME...]",
		Short: "What a default secret name needs (Secret, keys) and injects (env vars per layer, files)",
		Long: `For each default secret name: the Kubernetes Secret it reads and the keys it expects (and which
are optional), the env vars of the prefect and native layers with the key each comes from, and the
files mounted with their paths. The answer is the webhook's: a pod declaring the name is run through
flowauth's handler, once per layer. With no NAME, every name of the map is listed.`,
		Example: `  kubectl flowauth explain AWS_CREDENTIALS GCP_CREDENTIALS
  kubectl flowauth explain SNOWFLAKE_CREDS --secret-map secret-map.yaml
  kubectl flowauth explain            # every name, one line each`,
		RunE: func(cmd *cobra.Command, names []string) error {
			m := secretmap.Builtin()
			if secretMapFile != "" {
				var err error
				if m, err = secretmap.LoadFile(secretMapFile); err != nil {
					return err
				}
			}
			if len(names) == 0 {
				for _, n := range m.Names() {
					e, _ := m.Lookup(n)
					fprintf(streams.Out, "%-34s Secret %-34s %s\n", n, e.SecretName, e.Description)
				}
				return nil
			}
			for i, n := range names {
				if i > 0 {
					fprintf(streams.Out, "\n")
				}
				if err := explain(cmd.Context(), streams.Out, m, n); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&secretMapFile, "secret-map", "", "a secret map file extending the built-in one (the chart's secretMap value)")
	return cmd
}

// explain prints one name, reading what is injected off the webhook's own answer.
func explain(ctx context.Context, w io.Writer, m *secretmap.Map, name string) error {
	if err := secretmap.ValidateName(name); err != nil {
		return fmt.Errorf("%q: %w", name, err)
	}
	e, known := m.Resolve(name)
	origin := "in the secret map"
	if !known {
		origin = "not in the secret map: a custom name, a string in key \"value\", Prefect layer only"
	}
	fprintf(w, "%s (%s)\n", name, origin)
	if e.Description != "" {
		fprintf(w, "  used by:  %s\n", e.Description)
	}
	fprintf(w, "  Secret:   %s, in the pod's namespace (another: annotate the pod %s%s: <secret>)\n", e.SecretName, mutate.SecretOverridePrefix, name)
	var keys []string
	literals := make([]string, 0, len(e.Keys))
	for _, k := range e.Keys {
		if k.Optional {
			keys = append(keys, k.Name+" (optional)")
			continue
		}
		keys = append(keys, k.Name)
		if e.IsFile(k.Name) {
			literals = append(literals, "--from-file="+k.Name+"=<path>")
		} else {
			literals = append(literals, "--from-literal="+k.Name+"=<value>")
		}
	}
	fprintf(w, "  keys:     %s (shape %s)\n", strings.Join(keys, ", "), e.Shape)
	for _, layer := range []mutate.Layers{mutate.LayersPrefect, mutate.LayersNative} {
		pod, err := injected(ctx, m, name, layer)
		if err != nil {
			return err
		}
		fprintf(w, "  %s layer:\n", layer)
		if len(pod.Spec.Containers[0].Env) == 0 && len(pod.Spec.Containers[0].VolumeMounts) == 0 {
			fprintf(w, "    (nothing)\n")
		}
		for _, env := range pod.Spec.Containers[0].Env {
			switch {
			case env.ValueFrom != nil && env.ValueFrom.SecretKeyRef != nil:
				opt := ""
				if r := env.ValueFrom.SecretKeyRef; r.Optional != nil && *r.Optional {
					opt = " (optional)"
				}
				fprintf(w, "    env  %-62s <- key %s%s\n", env.Name, env.ValueFrom.SecretKeyRef.Key, opt)
			default:
				fprintf(w, "    env  %-62s =  %s\n", env.Name, env.Value)
			}
		}
		for _, mount := range pod.Spec.Containers[0].VolumeMounts {
			for _, v := range pod.Spec.Volumes {
				if v.Name == mount.Name && v.Secret != nil {
					for _, item := range v.Secret.Items {
						fprintf(w, "    file %-62s <- key %s (read-only)\n", mount.MountPath+"/"+item.Path, item.Key)
					}
					if len(v.Secret.Items) == 0 {
						fprintf(w, "    file %-62s <- every key (read-only)\n", mount.MountPath+"/")
					}
				}
			}
		}
	}
	fprintf(w, "  create:   kubectl create secret generic %s -n <namespace> %s\n", e.SecretName, strings.Join(literals, " "))
	return nil
}

// injected is what the webhook gives a one-container pod declaring name with the given layer.
func injected(ctx context.Context, m *secretmap.Map, name string, layer mutate.Layers) (*corev1.Pod, error) {
	pod := map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": "explain", "annotations": map[string]any{mutate.AnnotationSecrets: name, mutate.AnnotationInject: string(layer)}},
		"spec":     map[string]any{"containers": []any{map[string]any{"name": "flow", "image": "flow"}}},
	}
	obj, err := render.Render(ctx, pod, render.Cluster{Map: m, Namespace: "default"})
	if err != nil {
		return nil, err
	}
	if obj.Denied() {
		return nil, fmt.Errorf("%s", obj.Templates[0].Denial)
	}
	var out corev1.Pod
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Rendered, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
