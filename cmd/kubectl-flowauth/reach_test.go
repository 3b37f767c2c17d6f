package main

import (
	"context"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

// TestUnreachableNamesTheLikelyCause: the API server's own wording of each failure (as 1.30 to
// 1.37 print it) maps to its cause and the setting that mends it.
func TestUnreachableNamesTheLikelyCause(t *testing.T) {
	const prefix = `Internal error occurred: failed calling webhook "pods.flowauth.io": failed to call webhook: Post "https://flowauth.flowauth-system.svc:443/mutate-v1-pod?timeout=5s": `
	tests := []struct {
		err, cause, fix string
	}{
		{"context deadline exceeded", "control plane cannot reach pod addresses", "values-host-network.yaml"},
		{"dial tcp 10.0.3.7:9443: i/o timeout", "GKE private cluster", "webhook.port=10250"},
		{"dial tcp 10.0.3.7:9443: connect: connection refused", "nothing answers at the webhook's address", "endpointslices"},
		{`no endpoints available for service "flowauth"`, "no ready replica", "get pods -l app.kubernetes.io/instance=flowauth,app.kubernetes.io/name=flowauth"},
		{"tls: failed to verify certificate: x509: certificate signed by unknown authority", "does not verify against the caBundle", "rollout restart"},
		{"remote error: tls: certificate required", "client certificate", "AdmissionConfiguration"},
		{"EOF", "EOF", "logs deployment/flowauth"},
	}
	for _, tt := range tests {
		cause, fix := unreachable(prefix+tt.err, "flowauth", "flowauth-system", findInstallation(context.Background(), fake.NewClientBuilder().Build(), "flowauth", "flowauth-system"))
		if !strings.Contains(cause, tt.cause) || !strings.Contains(fix, tt.fix) {
			t.Errorf("%s:\n cause %q (want %q)\n fix %q (want %q)", tt.err, cause, tt.cause, fix, tt.fix)
		}
	}
}
