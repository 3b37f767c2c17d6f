package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/flowauth/flowauth/test/localcluster"
)

// meshProxy is the sidecar the test's own webhook adds: a name in no skip list, so only
// flowauth.io/original-containers keeps it from getting credentials.
const meshProxy = "mesh-proxy"

// TestSidecarAddedByAnotherWebhookGetsNothing: a second mutating webhook, called after flowauth
// and with reinvocationPolicy IfNeeded on both sides as a service mesh's injector is, adds a
// sidecar to a flow-run pod. flowauth is called again for it and leaves it alone: the flow
// container authenticates, the sidecar has no credential env var and no credential volume, and
// prints no credential variable's name.
func TestSidecarAddedByAnotherWebhookGetsNothing(t *testing.T) {
	needNode(t)
	url, ca := serveSidecarInjector(t)
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: "zz-mesh-injector"}, // after "flowauth" in the API server's order
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "sidecars.mesh.example",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: ca},
			Rules:                   []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create}, Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
			ObjectSelector:          &metav1.LabelSelector{MatchLabels: map[string]string{"mesh.example/inject": "true"}},
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			ReinvocationPolicy:      ptr.To(admissionregistrationv1.IfNeededReinvocationPolicy),
			TimeoutSeconds:          ptr.To[int32](5),
		}},
	}
	if err := cluster.Client.Create(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Client.Delete(context.Background(), cfg) })

	ns := newNamespace(t, "mesh")
	creds := newCredentials(t)
	createSecrets(t, ns, creds)
	job := exampleJob(t, "prefect2-flow-run-job.yaml", "AWS_CREDENTIALS")
	job.Spec.Template.Labels["mesh.example/inject"] = "true"
	apply(t, ns, job)
	logs := waitJob(t, ns, job.Name)
	requireFinding(t, logs["prefect-job"], "AWS_CREDENTIALS", "boto3 resolved credentials from env: access key "+digest(creds.AWSAccessKey))

	pod, err := cluster.WaitForJobPod(context.Background(), ns, job.Name)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stored pod: %s=%s, %s=%s", "flowauth.io/original-containers", pod.Annotations["flowauth.io/original-containers"], "flowauth.io/status", pod.Annotations["flowauth.io/status"])
	var sidecar *corev1.Container
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == meshProxy {
			sidecar = &pod.Spec.Containers[i]
		}
	}
	if sidecar == nil {
		t.Fatalf("the other webhook added no %s: containers %v", meshProxy, pod.Spec.Containers)
	}
	for _, e := range sidecar.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil || strings.HasPrefix(e.Name, "AWS_") {
			t.Errorf("the sidecar got %s", e.Name)
		}
	}
	for _, m := range sidecar.VolumeMounts {
		if strings.HasPrefix(m.Name, "flowauth-") {
			t.Errorf("the sidecar got the mount %s", m.Name)
		}
	}
	t.Logf("the sidecar's env var names:\n%s", logs[meshProxy])
	if strings.Contains(logs[meshProxy], "AWS_") || strings.Contains(logs[meshProxy], "PREFECT__CONTEXT__SECRETS__") {
		t.Errorf("the sidecar sees credential variables:\n%s", logs[meshProxy])
	}
	if !strings.Contains(pod.Annotations["flowauth.io/status"], "skipped-containers="+meshProxy) {
		t.Errorf("the status does not say the sidecar was skipped: %q", pod.Annotations["flowauth.io/status"])
	}
}

// serveSidecarInjector serves, on the node's bridge address, a webhook that adds meshProxy
// (printing its env var names, never values) to every pod it is sent, once. It returns the
// webhook's URL and the PEM of its self-signed certificate.
func serveSidecarInjector(t *testing.T) (string, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ip := net.ParseIP(localcluster.GatewayIP)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mesh-injector"}, IPAddresses: []net.IP{ip},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	var lc net.ListenConfig
	l, err := lc.Listen(context.Background(), "tcp", net.JoinHostPort(localcluster.GatewayIP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12,
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, Handler: http.HandlerFunc(addSidecar)}
	go func() { _ = srv.ServeTLS(l, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	return "https://" + l.Addr().String() + "/mutate", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func addSidecar(w http.ResponseWriter, r *http.Request) {
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
		http.Error(w, "not an AdmissionReview", http.StatusBadRequest)
		return
	}
	var pod corev1.Pod
	_ = json.Unmarshal(review.Request.Object.Raw, &pod)
	resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
	has := false
	for _, c := range pod.Spec.Containers {
		has = has || c.Name == meshProxy
	}
	if !has && len(pod.Spec.Containers) > 0 {
		sidecar := corev1.Container{Name: meshProxy, Image: pod.Spec.Containers[0].Image,
			Command: []string{"sh", "-c", "env | sed 's/=.*//' | sort"}}
		patch, _ := json.Marshal([]map[string]any{{"op": "add", "path": "/spec/containers/-", "value": sidecar}})
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = patch, &pt
	}
	review.Response, review.Request = resp, nil
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(review)
}

// TestWorkloadIdentityBesideStaticKeysIsTold: a flow run whose container already has EKS IRSA's
// variables and declares AWS_CREDENTIALS is warned at `kubectl apply`, and the real boto3 in the
// probe image shows what the warning says: it resolves the static keys from the environment.
func TestWorkloadIdentityBesideStaticKeysIsTold(t *testing.T) {
	needNode(t)
	ns := newNamespace(t, "irsa")
	creds := newCredentials(t)
	createSecrets(t, ns, creds)
	job := exampleJob(t, "prefect2-flow-run-job.yaml", "AWS_CREDENTIALS")
	c := &job.Spec.Template.Spec.Containers[0]
	c.Env = append(c.Env, corev1.EnvVar{Name: "AWS_ROLE_ARN", Value: "arn:aws:iam::111122223333:role/etl"},
		corev1.EnvVar{Name: "AWS_WEB_IDENTITY_TOKEN_FILE", Value: "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"})
	stderr := apply(t, ns, job)
	t.Logf("kubectl apply printed:\n%s", stderr)
	if !strings.Contains(stderr, `Warning: flowauth: container "prefect-job" also gets credentials from EKS IAM roles for service accounts (AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE) besides AWS_CREDENTIALS: boto3 and the AWS SDKs take the static keys`) {
		t.Errorf("kubectl apply did not print the IdentityOverlap warning:\n%s", stderr)
	}
	log := waitJob(t, ns, job.Name)["prefect-job"]
	t.Logf("probe:\n%s", log)
	requireFinding(t, log, "AWS_CREDENTIALS", "boto3 resolved credentials from env: access key "+digest(creds.AWSAccessKey))
}
