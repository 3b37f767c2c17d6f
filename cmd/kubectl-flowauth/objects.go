package main

import (
	"context"
	"slices"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// installation names the objects of a flowauth installation that doctor checks.
type installation struct {
	// config is the webhook configurations' name (mutating and validating), deployment the
	// Deployment's, service the Service's, namespace where the last two are.
	config, deployment, service, namespace string
	// pods selects the webhook's pods.
	pods labels.Selector
}

// fullname is the chart's name for a release's objects (flowauth.fullname): the release's name
// when it holds "flowauth", else "<release>-flowauth".
func fullname(release string) string {
	if strings.Contains(release, "flowauth") {
		return release
	}
	return release + "-flowauth"
}

// findInstallation names the objects: the chart's for the release, if its webhook configuration
// exists; else those of the configuration that carries flowauth's pod webhook (a kustomize
// install, or a release not named with --release), its Service, and the Deployment behind that.
func findInstallation(ctx context.Context, c client.Client, release, namespace string) installation {
	name := fullname(release)
	in := installation{config: name, deployment: name, service: name, namespace: namespace,
		pods: labels.SelectorFromSet(labels.Set{"app.kubernetes.io/instance": release, "app.kubernetes.io/name": "flowauth"})}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if c.Get(ctx, types.NamespacedName{Name: name}, &mwc) == nil {
		return in
	}
	var all admissionregistrationv1.MutatingWebhookConfigurationList
	if c.List(ctx, &all) != nil {
		return in
	}
	i := slices.IndexFunc(all.Items, func(m admissionregistrationv1.MutatingWebhookConfiguration) bool {
		return slices.ContainsFunc(m.Webhooks, func(w admissionregistrationv1.MutatingWebhook) bool {
			return w.Name == "pods.flowauth.io" && w.ClientConfig.Service != nil
		})
	})
	if i < 0 {
		return in
	}
	found := all.Items[i]
	svc := found.Webhooks[slices.IndexFunc(found.Webhooks, func(w admissionregistrationv1.MutatingWebhook) bool { return w.Name == "pods.flowauth.io" })].ClientConfig.Service
	in.config, in.service, in.namespace = found.Name, svc.Name, svc.Namespace
	var service corev1.Service
	if c.Get(ctx, types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}, &service) != nil || len(service.Spec.Selector) == 0 {
		return in
	}
	in.pods = labels.SelectorFromSet(service.Spec.Selector)
	var deployments appsv1.DeploymentList
	if c.List(ctx, &deployments, client.InNamespace(svc.Namespace)) == nil {
		for _, d := range deployments.Items {
			if in.pods.Matches(labels.Set(d.Spec.Template.Labels)) {
				in.deployment = d.Name
				break
			}
		}
	}
	return in
}
