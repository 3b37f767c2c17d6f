package secretkeys

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
)

const distinctive = "flowauth-test-value-9f3c1e"

func secretWithEverything() *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: "aws-credentials", Namespace: "flows", UID: "u1", ResourceVersion: "7",
			Labels:        map[string]string{"team": distinctive},
			Annotations:   map[string]string{"kubectl.kubernetes.io/last-applied-configuration": `{"data":{"ACCESS_KEY":"` + distinctive + `"}}`},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl", FieldsV1: metav1.NewFieldsV1(`{"f:data":{"f:` + distinctive + `":{}}}`)}},
		},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{"ACCESS_KEY": []byte(distinctive), "SECRET_ACCESS_KEY": []byte(distinctive + "2")},
		StringData: map[string]string{"SESSION_TOKEN": distinctive + "3"},
	}
}

func TestStripValuesKeepsOnlyNamesAndKeyNames(t *testing.T) {
	out, err := StripValues(secretWithEverything())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(out)
	if strings.Contains(string(b), distinctive) {
		t.Fatalf("a value survived the transform: %s", b)
	}
	want := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "aws-credentials", Namespace: "flows", UID: "u1", ResourceVersion: "7"},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{"ACCESS_KEY": nil, "SECRET_ACCESS_KEY": nil, "SESSION_TOKEN": nil},
	}
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}

	cm, _ := StripValues(&corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "env", Namespace: "flows", Annotations: map[string]string{"a": distinctive}},
		Data:       map[string]string{"REGION": distinctive}, BinaryData: map[string][]byte{"blob": []byte(distinctive)},
	})
	b, _ = json.Marshal(cm)
	if strings.Contains(string(b), distinctive) || !strings.Contains(string(b), `"REGION":""`) || !strings.Contains(string(b), `"blob":""`) {
		t.Errorf("ConfigMap transform: %s", b)
	}
	other := &corev1.Pod{}
	if got, _ := StripValues(other); got != other {
		t.Error("objects of other kinds must pass through unchanged")
	}
}

func TestIndexFollowsInformerEvents(t *testing.T) {
	ix := NewIndex()
	h := ix.secrets.handler()
	s, _ := StripValues(secretWithEverything())
	h.OnAdd(s, true)
	if keys, ok := ix.SecretKeys("flows", "aws-credentials"); !ok || fmt.Sprint(keys) != "[ACCESS_KEY SECRET_ACCESS_KEY SESSION_TOKEN]" {
		t.Errorf("after add: %v %v", keys, ok)
	}
	if _, ok := ix.SecretKeys("other", "aws-credentials"); ok {
		t.Error("a Secret of another namespace was found")
	}
	updated := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "aws-credentials", Namespace: "flows"}, Data: map[string][]byte{"ACCESS_KEY": nil}}
	h.OnUpdate(s, updated)
	if keys, _ := ix.SecretKeys("flows", "aws-credentials"); fmt.Sprint(keys) != "[ACCESS_KEY]" {
		t.Errorf("after update: %v", keys)
	}
	h.OnDelete(toolscache.DeletedFinalStateUnknown{Key: "flows/aws-credentials", Obj: updated})
	if _, ok := ix.SecretKeys("flows", "aws-credentials"); ok {
		t.Error("still found after a tombstone delete")
	}
	ix.configMaps.handler().OnAdd(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "env", Namespace: "flows"}, Data: map[string]string{"B": "", "A": ""}}, true)
	if keys, ok := ix.ConfigMapKeys("flows", "env"); !ok || fmt.Sprint(keys) != "[A B]" {
		t.Errorf("configmap: %v %v", keys, ok)
	}
	if s, cm := ix.Len(); s != 0 || cm != 1 {
		t.Errorf("Len = %d, %d", s, cm)
	}
}

// BenchmarkTenThousandSecretsOf100KiB feeds 10,000 Secrets of 100 KiB each (about 1 GiB of
// values) through the transform into the informer store stand-in and the index, and reports the
// heap in use afterwards: it tracks key names, not values.
func BenchmarkTenThousandSecretsOf100KiB(b *testing.B) {
	const n, size = 10_000, 100 << 10
	for b.Loop() {
		var before runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		ix := NewIndex()
		store := make([]any, 0, n) // the informer's store keeps the transformed objects
		h := ix.secrets.handler()
		for i := range n {
			value := make([]byte, size)
			value[0] = byte(i)
			s := &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("secret-%05d", i), Namespace: fmt.Sprintf("ns-%02d", i%50)},
				Data:       map[string][]byte{"credentials.json": value, "token": value[:64]},
			}
			stripped, _ := StripValues(s)
			store = append(store, stripped)
			h.OnAdd(stripped, true)
		}
		var after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&after)
		inUse := float64(after.HeapInuse) - float64(before.HeapInuse)
		b.ReportMetric(inUse/(1<<20), "MiB-heap-in-use")
		b.ReportMetric(inUse/n, "B-per-secret")
		runtime.KeepAlive(store)
		runtime.KeepAlive(ix)
	}
}
