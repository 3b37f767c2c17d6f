package mutate

import (
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// identity is another way a pod gets cloud credentials: env vars that a workload-identity
// webhook (or the pod's author) set, and which credentials a declared name brings beside them.
type identity struct {
	// name is the declared secret name whose credentials overlap.
	name string
	// what names the other way, for people.
	what string
	// env are the variables that show it (all must be set).
	env []string
	// precedence says which one the client library will use, and what to do.
	precedence string
}

// identities are the workload identities of the clouds flowauth serves credentials for. Their
// env vars are set by the EKS pod-identity webhook (IRSA), the EKS Pod Identity agent's webhook and
// Azure workload identity's webhook. GKE's workload identity has no env var to see (it is the
// metadata server, chosen by the ServiceAccount's iam.gke.io/gcp-service-account annotation):
// docs/reference.md, "Side by side with workload identity", covers it.
var identities = []identity{
	{name: "AWS_CREDENTIALS", what: "EKS IAM roles for service accounts", env: []string{"AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"},
		precedence: "boto3 and the AWS SDKs take the static keys flowauth injects (AWS_ACCESS_KEY_ID) before web identity, so the role is not used"},
	{name: "AWS_CREDENTIALS", what: "EKS Pod Identity", env: []string{"AWS_CONTAINER_CREDENTIALS_FULL_URI"},
		precedence: "boto3 and the AWS SDKs take the static keys flowauth injects (AWS_ACCESS_KEY_ID) before the container credentials endpoint, so the Pod Identity role is not used"},
	{name: "AZ_CREDENTIALS", what: "Azure workload identity", env: []string{"AZURE_FEDERATED_TOKEN_FILE"},
		precedence: "azure-identity's DefaultAzureCredential tries the environment's client secret (AZURE_CLIENT_SECRET, which flowauth injects when the Secret has it) before workload identity"},
}

// warnIdentityOverlap warns when a container that gets a declared name's native credentials
// already has another cloud identity: at apply time, people learn which one the client library
// will use, instead of one silently shadowing the other.
func warnIdentityOverlap(pod *corev1.Pod, targets []target, names []string, layers Layers, r *Result) {
	if !layers.native() {
		return
	}
	for _, id := range identities {
		if !slices.Contains(names, id.name) {
			continue
		}
		for _, t := range targets {
			c := t.get(pod)
			if !hasAllEnv(c, id.env) {
				continue
			}
			r.warn(ReasonIdentityOverlap, "container %q also gets credentials from %s (%s) besides %s: %s. To use %s, remove %s from %s or set %s: prefect; to use the static keys, remove %s from the container",
				t.name, id.what, strings.Join(id.env, ", "), id.name, id.precedence, id.what, id.name, AnnotationSecrets, AnnotationInject, strings.Join(id.env, ", "))
		}
	}
}

func hasAllEnv(c *corev1.Container, names []string) bool {
	for _, n := range names {
		if indexEnv(c.Env, n) < 0 {
			return false
		}
	}
	return true
}
