package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flowauth/flowauth/pkg/render"
)

// job explains a flow-run Job whose pod is missing or was refused, where pod/NAME cannot help (a
// refused pod never exists): what flowauth, or its policies, said about the Job's pods (the Job's
// FailedCreate and flowauth's Events on it), and what flowauth decides for its pod template now,
// with this cluster's settings, namespace defaults, allow-lists and Secrets.
func (d *doctor) job(ctx context.Context, name string) error {
	var job batchv1.Job
	if err := d.c.Get(ctx, types.NamespacedName{Namespace: d.namespace, Name: name}, &job); err != nil {
		return err
	}
	var events corev1.EventList
	if err := d.c.List(ctx, &events, client.InNamespace(d.namespace)); err != nil {
		return fmt.Errorf("listing events in %s: %w", d.namespace, err)
	}
	said := 0
	for _, e := range events.Items {
		if e.InvolvedObject.Kind != "Job" || e.InvolvedObject.Name != name {
			continue
		}
		refused := e.Reason == "FailedCreate" && strings.Contains(e.Message, "flowauth")
		if !refused && !strings.HasPrefix(e.Reason, "Flowauth") {
			continue
		}
		said++
		status := warn
		if refused || strings.HasPrefix(e.Reason, "FlowauthDenied") {
			status = fail
		}
		d.report(status, fmt.Sprintf("job %s: %s (x%d): %s", name, e.Reason, max(e.Count, 1), e.Message),
			"docs/troubleshooting.md lists each reason with its fix")
	}
	if said == 0 {
		d.report(pass, fmt.Sprintf("job %s: no refusal or warning of flowauth's recorded on it (Events last an hour)", name), "")
	}
	// What flowauth decides for the Job now (its pod template, as the Job controller would
	// create the pod).
	e := *d.emulated
	e.Namespace = d.namespace
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&job)
	if err != nil {
		return err
	}
	u["apiVersion"], u["kind"] = "batch/v1", "Job"
	r, err := render.Render(ctx, u, e.Cluster)
	if err != nil {
		return err
	}
	for _, t := range r.Templates {
		switch {
		case !t.FlowRun:
			d.report(pass, fmt.Sprintf("job %s: its pods are not flow runs (no flowauth.io/secrets, no Prefect flow-run label with namespace defaults): flowauth leaves them alone", name), "")
		case t.Denial != "":
			d.report(fail, fmt.Sprintf("job %s: flowauth refuses its pods now: %s", name, t.Denial), "docs/troubleshooting.md lists each reason with its fix; then recreate the Job (a Prefect run: retry it)")
		default:
			d.report(pass, fmt.Sprintf("job %s: flowauth admits its pods now: %s", name, orNone(t.Status)), "")
		}
		for _, w := range slices.Compact(t.Warnings) {
			d.report(warn, fmt.Sprintf("job %s: %s", name, w), "")
		}
	}
	return nil
}
