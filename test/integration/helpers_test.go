package integration

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/flowauth/flowauth/pkg/mutate"
)

const containerAdderPath = "/test-add-container"

// containerAdder is the test-only second webhook: it adds a container named late-sidecar.
type containerAdder struct{}

func (containerAdder) Handle(_ context.Context, req admission.Request) admission.Response {
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == "late-sidecar" {
			return admission.Allowed("")
		}
	}
	pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "late-sidecar", Image: "busybox"})
	out, err := json.Marshal(&pod)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	return admission.PatchResponseFromRaw(req.Object.Raw, out)
}

// newNamespace creates a namespace, opted in to injection when optedIn, with the given
// flowauth.io/secrets defaults (none when ""), and waits until the webhook's cache has seen it.
func newNamespace(t *testing.T, optedIn bool, defaults string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "it-"}}
	if optedIn {
		ns.Labels = map[string]string{"flowauth.io/injection": "enabled"}
	}
	if defaults != "" {
		ns.Annotations = map[string]string{mutate.AnnotationSecrets: defaults}
	}
	ctx := context.Background()
	if err := k8s.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var seen metav1.PartialObjectMetadata
		seen.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
		if err := nsCache.Get(ctx, client.ObjectKey{Name: ns.Name}, &seen); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("namespace %s never reached the webhook's cache", ns.Name)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return ns.Name
}

// flowRunPod is a Prefect 2/3 worker's pod as a Job controller would create it.
func flowRunPod(namespace string, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "tangerine-lion-", Namespace: namespace, Annotations: annotations,
			Labels: map[string]string{"prefect.io/flow-run-id": "6f1b0b5e-1c1f-4b7a-9a43-0f4c8c1d2e3f"},
		},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "prefect-job", Image: "prefecthq/prefect:3-python3.12"}},
		},
	}
}

// warningRecorder collects the admission warnings the API server passes on to a client.
type warningRecorder struct {
	mu       sync.Mutex
	messages []string
}

func (w *warningRecorder) HandleWarningHeader(_ int, _ string, message string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.messages = append(w.messages, message)
}

func (w *warningRecorder) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.messages...)
}

// clientWithWarnings is a client whose warnings land in the returned recorder.
func clientWithWarnings(t *testing.T) (client.Client, *warningRecorder) {
	t.Helper()
	rec := &warningRecorder{}
	cfg := rest.CopyConfig(restCfg)
	cfg.WarningHandler = rec
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c, rec
}

// webhookCalls is how many pod admission requests flowauth's handler has answered.
func webhookCalls(t *testing.T) float64 {
	t.Helper()
	families, err := registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var total float64
	for _, f := range families {
		if f.GetName() == "flowauth_admission_requests_total" {
			for _, m := range f.GetMetric() {
				total += counterValue(m)
			}
		}
	}
	return total
}

func counterValue(m *dto.Metric) float64 { return m.GetCounter().GetValue() }

func envByName(c corev1.Container) map[string]corev1.EnvVar {
	out := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		out[e.Name] = e
	}
	return out
}

// secretRef returns "secret/key" of a secretKeyRef env var, or "" for anything else.
func secretRef(e corev1.EnvVar) string {
	if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.Value != "" {
		return ""
	}
	return e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
}
