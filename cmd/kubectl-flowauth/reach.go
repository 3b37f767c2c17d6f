package main

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flowauth/flowauth/pkg/mutate"
)

// reachable asks the API server to admit a flow-run pod in the namespace as a dry run (the
// webhook is called, sideEffects NoneOnDryRun, and nothing is stored). Any answer from flowauth,
// even a refusal, shows the API server reaches it; a failed call is classified by unreachable.
func (d *doctor) reachable(ctx context.Context) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "flowauth-doctor-", Namespace: d.namespace,
			Labels: map[string]string{mutate.LabelFlowRunIDPrefect2: "00000000-0000-0000-0000-000000000000"},
			// A name to inject, so that an answer from flowauth always shows (a status, or a refusal).
			Annotations: map[string]string{mutate.AnnotationSecrets: "GITHUB_ACCESS_TOKEN"},
		},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "prefect-job", Image: "flowauth-doctor-dry-run"}},
		},
	}
	err := d.c.Create(ctx, pod, client.DryRunAll)
	if err != nil && strings.Contains(err.Error(), "cannot create resource") {
		d.report(warn, "could not check that the API server reaches flowauth: "+err.Error(), "run doctor as a user who may create pods in "+d.namespace+" (a dry run stores nothing)")
		return
	}
	if err == nil || !strings.Contains(err.Error(), "failed calling webhook") {
		if err == nil && pod.Annotations[mutate.AnnotationStatus] == "" {
			d.report(warn, "a dry-run flow-run pod was admitted without "+mutate.AnnotationStatus+": flowauth was not called for it", "kubectl get mutatingwebhookconfiguration "+d.obj.config+" -o yaml (namespaceSelector, matchConditions)")
			return
		}
		d.report(pass, fmt.Sprintf("the API server reaches flowauth: a dry-run flow-run pod in %s was answered", d.namespace), "")
		return
	}
	cause, fix := unreachable(err.Error(), d.release, d.relNS, d.obj)
	d.report(fail, "the API server cannot call flowauth: "+cause, fix)
}

// unreachable names the likely cause of a failed webhook call from the API server's error, and
// what to do about it (docs/install.md, "Managed clouds' networks").
func unreachable(msg, release, relNS string, obj installation) (cause, fix string) {
	upgrade := fmt.Sprintf("helm upgrade %s CHART -n %s --reuse-values", release, relNS)
	last := msg
	if i := strings.LastIndex(msg, ": "); i >= 0 && i+2 < len(msg) {
		last = msg[i+2:]
	}
	switch {
	case strings.Contains(msg, "no endpoints available"), strings.Contains(msg, "not found"):
		return "no ready replica backs the Service (" + last + ")",
			fmt.Sprintf("kubectl -n %s get pods -l %s; kubectl -n %s get endpointslices -l kubernetes.io/service-name=%s", relNS, obj.pods, relNS, obj.service)
	case strings.Contains(msg, "x509"), strings.Contains(msg, "certificate signed by unknown authority"):
		return "its certificate does not verify against the caBundle (" + last + ")",
			fmt.Sprintf("kubectl -n %s rollout restart deployment/%s (self-managed TLS re-injects the CA)", relNS, obj.deployment)
	case strings.Contains(msg, "certificate required"), strings.Contains(msg, "bad certificate"):
		return "flowauth requires a client certificate the API server does not present (" + last + ")",
			"give the API server an AdmissionConfiguration kubeConfigFile for the webhook (docs/install.md, \"Only the API server may call\"), or unset webhook.clientAuth.caConfigMap"
	case strings.Contains(msg, "deadline exceeded"), strings.Contains(msg, "i/o timeout"), strings.Contains(msg, "Client.Timeout"):
		return "its packets to the webhook's address are dropped (" + last + "): the control plane cannot reach pod addresses on the webhook port. " +
				"Likely: EKS with a custom CNI (Calico, Cilium overlay), a GKE private cluster's firewall (only 443 and 10250 open from the control plane), " +
				"or a NetworkPolicy that does not admit the API server",
			upgrade + " -f examples/values-host-network.yaml (EKS custom CNI); on GKE open the webhook port from the control plane's range " +
				"or --set webhook.port=10250; with networkPolicy.enabled, list the control plane in networkPolicy.webhookFrom (docs/install.md, \"Managed clouds' networks\")"
	case strings.Contains(msg, "connection refused"), strings.Contains(msg, "no route to host"), strings.Contains(msg, "network is unreachable"):
		return "nothing answers at the webhook's address (" + last + "): a firewall rejects the port, or the replica behind it is gone",
			fmt.Sprintf("kubectl -n %s get endpointslices -l kubernetes.io/service-name=%s -o wide; open the webhook port from the control plane to the nodes", relNS, obj.service)
	default:
		return last, fmt.Sprintf("kubectl -n %s logs deployment/%s; docs/operations.md, \"FlowauthWebhookCallsFailing\"", relNS, obj.deployment)
	}
}
