package secretkeys

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
)

const distinctive = "flowauth-test-value-9f3c1e"

func secretWithEverything() *corev1.Secret {
	return &corev1.Secret{
		TypeMeta: metav1.TypeMeta{Kind: "Secret", APIVersion: "v1"},
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

func listJSON(rv, cont string, items ...any) []byte {
	b, err := json.Marshal(map[string]any{
		"kind": "SecretList", "apiVersion": "v1",
		"metadata": map[string]any{"resourceVersion": rv, "continue": cont},
		"items":    items,
	})
	if err != nil {
		panic(err) // maps of API objects always marshal
	}
	return b
}

type seen struct{ namespace, name, keys string }

func TestDecodeListKeepsNamesAndKeyNamesOnly(t *testing.T) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "env", Namespace: "flows", Annotations: map[string]string{"a": distinctive}},
		Data: map[string]string{"REGION": distinctive}, BinaryData: map[string][]byte{"blob": []byte(distinctive)}}
	body := listJSON("42", "next-page", secretWithEverything(), cm)
	var got []seen
	meta, err := decodeList(strings.NewReader(string(body)), func(it item) {
		internKeys(it.keys)
		got = append(got, seen{it.namespace, it.name, strings.Join(it.keys, ",")})
	})
	if err != nil {
		t.Fatal(err)
	}
	if meta.ResourceVersion != "42" || meta.Continue != "next-page" {
		t.Errorf("list metadata = %+v", meta)
	}
	// stringData is write-only: the API server never returns it, so it is not a key here.
	want := []seen{{"flows", "aws-credentials", "ACCESS_KEY,SECRET_ACCESS_KEY"}, {"flows", "env", "REGION,blob"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("decoded %v, want %v", got, want)
	}
}

func TestDecodeListRejectsWhatIsNotAList(t *testing.T) {
	for _, body := range []string{``, `[]`, `{"items": {}}`, `{"items": [1]}`, `{"items": [`} {
		if _, err := decodeList(strings.NewReader(body), func(item) {}); err == nil {
			t.Errorf("%q: no error", body)
		}
	}
	if _, err := decodeList(strings.NewReader(`{"items": null, "metadata": {}}`), func(item) {}); err != nil {
		t.Errorf("an empty list: %v", err)
	}
}

func TestStoreFollowsTheReflector(t *testing.T) {
	s := newStore()
	old := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "old", Namespace: "flows"}, Data: map[string][]byte{"token": nil}}
	if err := s.Replace([]any{old}, "1"); err != nil {
		t.Fatal(err)
	}
	if !s.synced() {
		t.Error("not synced after the first Replace")
	}
	_ = s.Add(secretWithEverything())
	if keys, ok := s.get("flows", "aws-credentials"); !ok || fmt.Sprint(keys) != "[ACCESS_KEY SECRET_ACCESS_KEY SESSION_TOKEN]" {
		t.Errorf("after add: %v %v", keys, ok)
	}
	if _, ok := s.get("other", "aws-credentials"); ok {
		t.Error("a Secret of another namespace was found")
	}
	updated := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "aws-credentials", Namespace: "flows"}, Data: map[string][]byte{"ACCESS_KEY": nil}}
	_ = s.Update(updated)
	if keys, _ := s.get("flows", "aws-credentials"); fmt.Sprint(keys) != "[ACCESS_KEY]" {
		t.Errorf("after update: %v", keys)
	}
	_ = s.Delete(toolscache.DeletedFinalStateUnknown{Key: "flows/aws-credentials", Obj: updated})
	if _, ok := s.get("flows", "aws-credentials"); ok {
		t.Error("still found after a tombstone delete")
	}
	_ = s.Add(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "empty", Namespace: "flows"}})
	if keys, ok := s.get("flows", "empty"); !ok || len(keys) != 0 {
		t.Errorf("a Secret without keys: %v %v", keys, ok)
	}
	// A relist replaces everything: what is gone from the list is gone from the store.
	_ = s.Replace([]any{&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "new", Namespace: "flows"}}}, "2")
	if _, ok := s.get("flows", "old"); ok {
		t.Error("an object missing from the relist survived it")
	}
	if s.len() != 1 {
		t.Errorf("len = %d after relist", s.len())
	}
}

func TestObjectsOfOneShapeShareTheirKeyNames(t *testing.T) {
	a := internKeys([]string{"SECRET_ACCESS_KEY", "ACCESS_KEY"})
	b := internKeys([]string{"ACCESS_KEY", "SECRET_ACCESS_KEY"})
	if a != b {
		t.Error("two Secrets with the same keys hold two copies of their names")
	}
}

// fakeAPI serves Secret list pages from a slice, limit at a time, as the API server pages a
// consistent list, and records the queries it was asked.
type fakeAPI struct {
	mu      sync.Mutex
	secrets []*corev1.Secret
	queries []string
	expire  int // the next expire requests with a continue token answer 410 Expired
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	q := r.URL.Query()
	f.queries = append(f.queries, r.URL.Path+"?"+r.URL.RawQuery)
	if r.Header.Get("Accept") != "application/json" {
		http.Error(w, "want JSON", http.StatusNotAcceptable)
		return
	}
	if q.Get("continue") != "" && f.expire > 0 {
		f.expire--
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusGone)
		_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Expired","code":410,"message":"continue token expired"}`))
		return
	}
	items := f.secrets
	if name, ok := strings.CutPrefix(q.Get("fieldSelector"), "metadata.name="); ok {
		items = nil
		for _, s := range f.secrets {
			if s.Name == name {
				items = append(items, s)
			}
		}
	}
	start := 0
	if c := q.Get("continue"); c != "" {
		_, _ = fmt.Sscan(c, &start)
	}
	end, cont := len(items), ""
	if l := q.Get("limit"); l != "" {
		var n int
		_, _ = fmt.Sscan(l, &n)
		if start+n < end {
			end, cont = start+n, fmt.Sprint(start+n)
		}
	}
	page := make([]any, 0, end-start)
	for _, s := range items[start:end] {
		page = append(page, s)
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(listJSON("100", cont, page...))
}

func fakeClient(t *testing.T, api http.Handler) kubernetes.Interface {
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func manySecrets(n int) []*corev1.Secret {
	out := make([]*corev1.Secret, n)
	for i := range out {
		out[i] = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("s-%03d", i), Namespace: "flows"},
			Data: map[string][]byte{"token": []byte(distinctive)}}
	}
	return out
}

// TestListPagesAConsistentReadWithTheSelectors: whatever the reflector asks, the list is read
// at resourceVersion "" in pages of the page size, with the selectors, and restarts when a
// continue token expires halfway.
func TestListPagesAConsistentReadWithTheSelectors(t *testing.T) {
	api := &fakeAPI{secrets: manySecrets(25), expire: 1}
	cs := fakeClient(t, api)
	s := newStore()
	_ = s.Add(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "deleted-meanwhile", Namespace: "flows"}})
	l := &lister{store: s, rest: cs.CoreV1().RESTClient(), resource: "secrets", fieldSelector: DefaultSecretFieldSelector, labelSelector: "team=data", pageSize: 10}
	obj, err := l.ListWithContext(context.Background(), metav1.ListOptions{ResourceVersion: "0", Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	if rv := obj.(*objectList).ResourceVersion; rv != "100" {
		t.Fatalf("listed at %q", rv)
	}
	// The reflector ends the list with Replace: what the list did not put is dropped.
	_ = s.Replace(nil, "100")
	if _, ok := s.get("flows", "s-024"); !ok || s.len() != 25 {
		t.Fatalf("the store holds %d objects after the list", s.len())
	}
	// 1 page, then an expired continue: the whole list again in 3 pages.
	if len(api.queries) != 5 {
		t.Errorf("queries:\n%s", strings.Join(api.queries, "\n"))
	}
	for _, q := range api.queries {
		if strings.Contains(q, "resourceVersion") || !strings.Contains(q, "limit=10") ||
			!strings.Contains(q, "fieldSelector=type%21%3Dhelm.sh%2Frelease.v1") || !strings.Contains(q, "labelSelector=team%3Ddata") {
			t.Errorf("query %s", q)
		}
	}
	if !(&lister{}).IsWatchListSemanticsUnSupported() {
		t.Error("the reflector would stream the initial list")
	}
}

func TestLiveReadsOneObjectByName(t *testing.T) {
	api := &fakeAPI{secrets: manySecrets(3)}
	live := NewLive(fakeClient(t, api), 0)
	keys, found, err := live.SecretKeys(context.Background(), "flows", "s-001")
	if err != nil || !found || fmt.Sprint(keys) != "[token]" {
		t.Errorf("SecretKeys = %v, %v, %v", keys, found, err)
	}
	if _, found, err := live.SecretKeys(context.Background(), "flows", "nope"); err != nil || found {
		t.Errorf("a missing Secret: %v, %v", found, err)
	}
	if q := api.queries[0]; !strings.HasPrefix(q, "/api/v1/namespaces/flows/secrets?") || !strings.Contains(q, "fieldSelector=metadata.name%3Ds-001") {
		t.Errorf("query %s", q)
	}
}

// BenchmarkListOfLargeSecrets lists 2,000 Secrets of 512 KiB (1 GiB of base64 values) through
// the paged, streamed decode into the store, and reports the peak heap during the list and the
// heap per object kept: the peak follows one object and the kept names, not the values.
func BenchmarkListOfLargeSecrets(b *testing.B) {
	const n, size = 2_000, 512 << 10
	cs := largeSecretsServer(b, n, size)
	for b.Loop() {
		s, before, high, err := listMeasured(cs)
		if err != nil {
			b.Fatal(err)
		}
		var after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&after)
		if s.len() != n {
			b.Fatalf("stored %d", s.len())
		}
		b.ReportMetric(float64(high-before.HeapAlloc)/(1<<20), "MiB-peak-heap")
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B-kept-per-object")
		runtime.KeepAlive(s)
	}
}

// largeSecretsServer serves n Helm release Secrets of size bytes each as the API server pages
// a list, 500 a page, writing them without holding them.
func largeSecretsServer(tb testing.TB, n, size int) kubernetes.Interface {
	value := `"` + base64.StdEncoding.EncodeToString(make([]byte, size)) + `"`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := 0
		_, _ = fmt.Sscan(r.URL.Query().Get("continue"), &start)
		end, cont := min(start+500, n), ""
		if end < n {
			cont = fmt.Sprint(end)
		}
		_, _ = fmt.Fprintf(w, `{"kind":"SecretList","apiVersion":"v1","metadata":{"resourceVersion":"9","continue":%q},"items":[`, cont)
		for i := start; i < end; i++ {
			if i > start {
				_, _ = w.Write([]byte{','})
			}
			_, _ = fmt.Fprintf(w, `{"metadata":{"name":"sh.helm.release.v1.r%d.v1","namespace":"ns-%d"},"type":"helm.sh/release.v1","data":{"release":%s}}`, i, i%100, value)
		}
		_, _ = w.Write([]byte("]}"))
	}))
	tb.Cleanup(srv.Close)
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		tb.Fatal(err)
	}
	return cs
}

// listMeasured lists every Secret of cs into a new store and returns it with the heap before
// the list and the heap's peak during it.
func listMeasured(cs kubernetes.Interface) (*store, runtime.MemStats, uint64, error) {
	s := newStore()
	l := &lister{store: s, rest: cs.CoreV1().RESTClient(), resource: "secrets", pageSize: 500}
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	peak := newPeakSampler()
	_, err := l.ListWithContext(context.Background(), metav1.ListOptions{})
	high := peak.stop()
	_ = s.Replace(nil, "9")
	return s, before, high, err
}

// peakSampler samples the heap in use until stopped and returns the highest figure seen.
type peakSampler struct {
	done chan struct{}
	high chan uint64
}

func newPeakSampler() *peakSampler {
	p := &peakSampler{done: make(chan struct{}), high: make(chan uint64)}
	go func() {
		var high uint64
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			high = max(high, m.HeapAlloc)
			select {
			case <-p.done:
				p.high <- high
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	return p
}

func (p *peakSampler) stop() uint64 { close(p.done); return <-p.high }

// TestListHoldsOneObjectAtATime: 200 Helm-release-sized Secrets (133 MiB of base64 values) in
// one page are listed with the heap growing by a small fraction of that: values are skipped as
// they stream past, never held as a page. The figure is logged; the bound is ten times what it
// takes, and a fifth of what buffering one page would.
func TestListHoldsOneObjectAtATime(t *testing.T) {
	const n, size = 200, 512 << 10
	s, before, high, err := listMeasured(largeSecretsServer(t, n, size))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.len(); got != n {
		t.Fatalf("listed %d", got)
	}
	grew := float64(high-min(high, before.HeapAlloc)) / (1 << 20)
	t.Logf("heap peak during the list: +%.1f MiB for %d MiB of base64 values", grew, n*base64.StdEncoding.EncodedLen(size)>>20)
	if grew > 28 {
		t.Errorf("the heap grew by %.1f MiB listing %d objects: values are being held", grew, n)
	}
}

// TestOversizedObjectsKeepNoKeyNames: an object whose key names pass MaxKeyBytes costs the
// index no more than a small one, is counted, and is reported unknown so a pod that names it has
// it read from the API server (issue: 100 ConfigMaps of 1 MiB of key names each took every
// replica past its memory limit on each relist).
func TestOversizedObjectsKeepNoKeyNames(t *testing.T) {
	s := newStore()
	huge := map[string]string{}
	for i := 0; len(huge)*20 < 1<<20; i++ {
		huge[fmt.Sprintf("config-file-%08d", i)] = ""
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range 20 {
		_ = s.Add(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("big-%d", i), Namespace: "flows"}, Data: huge})
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if after.HeapAlloc > before.HeapAlloc+64<<10 {
		t.Errorf("20 oversized ConfigMaps kept %d KiB", (after.HeapAlloc-before.HeapAlloc)>>10)
	}
	if _, found := s.get("flows", "big-3"); found {
		t.Error("an oversized object was answered from the cache")
	}
	if n := s.oversizedCount(); n != 20 {
		t.Errorf("oversized count %d, want 20", n)
	}
	// Just under the bound is kept as usual.
	small := map[string]string{}
	for i := 0; (len(small)+1)*21 <= MaxKeyBytes; i++ { // 20 characters and a separator each
		small[fmt.Sprintf("config-file-%08d", i)] = ""
	}
	_ = s.Add(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "fits", Namespace: "flows"}, Data: small})
	if keys, found := s.get("flows", "fits"); !found || len(keys) != len(small) {
		t.Errorf("an object under the bound: found=%v, %d keys of %d", found, len(keys), len(small))
	}
}

// TestRestrictedTypesAreNeverIndexed: whatever the watch's selectors let through, a Secret of a
// restricted type (a ServiceAccount's token, registry credentials) is not kept, so a pod that
// names one has it read live, and the live read says its type (mutate refuses it then).
func TestRestrictedTypesAreNeverIndexed(t *testing.T) {
	s := newStore()
	token := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "default-token", Namespace: "flows"}, Type: corev1.SecretTypeServiceAccountToken, Data: map[string][]byte{"token": nil}}
	pull := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "pull", Namespace: "flows"}, Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{".dockerconfigjson": nil}}
	plain := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "aws-credentials", Namespace: "flows"}, Data: map[string][]byte{"ACCESS_KEY": nil}}
	if err := s.Replace([]any{token, plain}, "1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(pull); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"default-token": false, "pull": false, "aws-credentials": true} {
		if _, found := s.get("flows", name); found != want {
			t.Errorf("%s indexed: %v, want %v", name, found, want)
		}
	}
	var types []string
	body := listJSON("1", "", token, plain)
	if _, err := decodeList(strings.NewReader(string(body)), func(it item) { types = append(types, it.name+"="+it.secretType) }); err != nil {
		t.Fatal(err)
	}
	if want := "[default-token=kubernetes.io/service-account-token aws-credentials=]"; fmt.Sprint(types) != want {
		t.Errorf("decoded types %v, want %s", types, want)
	}
}

// TestKeyNamesHaveATotalBound: each object's key names were bounded (16 KiB) but their total was
// not, so 8,000 ConfigMaps of 16 KiB of distinct key names held about 128 MiB. Past the total
// bound, objects are kept as not known (read live when a pod names one) and counted; what is
// deleted or relisted gives its bytes back.
func TestKeyNamesHaveATotalBound(t *testing.T) {
	b := &budget{max: 64 << 10}
	s := newStore()
	s.budget = b
	configMap := func(i int) *corev1.ConfigMap {
		data := map[string]string{}
		for k := 0; k < 600; k++ { // about 15 KiB of key names, distinct per object
			data[fmt.Sprintf("key-%04d-of-cm-%04d", k, i)] = ""
		}
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%d", i), Namespace: "tenant"}, Data: data}
	}
	for i := range 8 {
		if err := s.Add(configMap(i)); err != nil {
			t.Fatal(err)
		}
	}
	if used := b.used.Load(); used > b.max {
		t.Errorf("%d bytes of key names kept, past the bound of %d", used, b.max)
	}
	known := 0
	for i := range 8 {
		if _, ok := s.get("tenant", fmt.Sprintf("cm-%d", i)); ok {
			known++
		}
	}
	if known == 0 || known == 8 || s.overBudgetCount() != 8-known {
		t.Errorf("%d of 8 known, %d over the bound: want the first ones known and the rest counted", known, s.overBudgetCount())
	}
	// Deleting what is kept gives its bytes back; a relist keeps what fits.
	for i := range 8 {
		_ = s.Delete(configMap(i))
	}
	if used := b.used.Load(); used != 0 {
		t.Errorf("%d bytes still counted after every object was deleted", used)
	}
	_ = s.Replace([]any{configMap(100)}, "2")
	if _, ok := s.get("tenant", "cm-100"); !ok {
		t.Error("an object that fits after the deletions is not known")
	}
	// Objects of one shape weigh once: 10,000 Secrets of the same keys fit a bound far smaller
	// than their sum.
	_ = s.Replace(nil, "3")
	for i := range 10000 {
		_ = s.Add(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("aws-%d", i), Namespace: "flows"}, Data: map[string][]byte{"ACCESS_KEY": nil, "SECRET_ACCESS_KEY": nil}})
	}
	if used, want := b.used.Load(), int64(len("ACCESS_KEY\x00SECRET_ACCESS_KEY")); used != want || s.overBudgetCount() != 0 {
		t.Errorf("10,000 Secrets of one shape weigh %d bytes (%d over the bound), want %d", used, s.overBudgetCount(), want)
	}
}
