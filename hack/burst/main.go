// Command burst is `make burst`: what flowauth costs pod creation through the API server. The same
// burst of flow-run pod creations (2,000 by 32 concurrent clients, as a backfill or a mapped flow
// makes them) goes through the local kube-apiserver three ways, alternating in one run: no webhook
// registered; the floor of ../shared/bench/admload (decode everything, answer "allowed") registered
// in flowauth's place, with the same configuration and the same certificate; the limit (decode
// nothing) answering with flowauth's own patch; and flowauth. It prints
// per way the medians of pods/s and of the client-observed create latency p50/p99, the failures, and
// for flowauth how many pods were stored injected, then flowauth's ratios to the floor-registered
// way: what calling a webhook costs the API server (floor against none), what applying and storing
// flowauth's mutation costs it (patched limit against floor), and what flowauth's own work costs
// (flowauth against patched limit). Two more ways run no webhook: a trivial MutatingAdmissionPolicy
// (one annotation added: the machinery's own cost), and flowauth compiled into admission policies
// (policy mode, pkg/policy), compared with both.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sync/errgroup"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/flowauth/flowauth/internal/results"
	"github.com/flowauth/flowauth/pkg/policy"
	"github.com/flowauth/flowauth/pkg/secretmap"
	"github.com/flowauth/flowauth/test/localcluster"
)

// The ways a burst goes through the API server.
const (
	none  = "no webhook"
	floor = "floor registered"
	// patchedLimit decodes nothing and answers every pod with flowauth's own patch for it: the API
	// server does all the work flowauth's answer gives it (apply the patch, store the larger pod),
	// the webhook next to none.
	patchedLimit = "patched limit registered"
	flowauth     = "flowauth"
	// trivialPolicy is a MutatingAdmissionPolicy that only adds an annotation to the same pods:
	// what the API server's policy machinery costs by itself. policyMode is flowauth compiled into
	// admission policies (pkg/policy): no webhook registered.
	trivialPolicy = "trivial policy"
	// patchedPolicy is a MutatingAdmissionPolicy whose mutation is flowauth's patch for the burst
	// pod as a constant: the policy analogue of the patched limit, the machinery plus applying and
	// storing the same injection, with no decision made in CEL.
	patchedPolicy = "patched policy"
	policyMode    = "flowauth policies"
)

// wayLabel marks a burst's namespace for the policy ways' bindings.
const wayLabel = "flowauth.io/burst-way"

// outcome is one burst's figures.
type outcome struct {
	podsPerSecond    float64
	p50, p99         time.Duration
	failed, injected int64
	firstErr         string
	// cpu is each process's CPU time per pod during the burst, in µs, by the names of processes.
	cpu map[string]float64
	// policies is what the API server's admission-policy metrics counted during the burst, per
	// pod: evaluations (a mutating policy's are one per mutation) and their time in µs.
	policies policyCost
}

// policyCost is the admission-policy metrics' evaluations and time, per pod.
type policyCost struct{ mutating, mutatingMicros, validating, validatingMicros float64 }

// readPolicyCost sums the API server's admission-policy check counters and durations.
func readPolicyCost(ctx context.Context, apiserver *http.Client, host string) (policyCost, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(host, "/")+"/metrics", nil)
	if err != nil {
		return policyCost{}, err
	}
	resp, err := apiserver.Do(req)
	if err != nil {
		return policyCost{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return policyCost{}, err
	}
	sum := func(name string, of func(*dto.Metric) float64) float64 {
		total := 0.0
		if f := families[name]; f != nil {
			for _, m := range f.Metric {
				total += of(m)
			}
		}
		return total
	}
	count := func(m *dto.Metric) float64 { return m.GetCounter().GetValue() }
	seconds := func(m *dto.Metric) float64 { return m.GetHistogram().GetSampleSum() * 1e6 }
	return policyCost{
		mutating:         sum("apiserver_mutating_admission_policy_check_total", count),
		mutatingMicros:   sum("apiserver_mutating_admission_policy_check_duration_seconds", seconds),
		validating:       sum("apiserver_validating_admission_policy_check_total", count),
		validatingMicros: sum("apiserver_validating_admission_policy_check_duration_seconds", seconds),
	}, nil
}

func (p policyCost) minus(q policyCost, n int) policyCost {
	f := float64(n)
	return policyCost{(p.mutating - q.mutating) / f, (p.mutatingMicros - q.mutatingMicros) / f, (p.validating - q.validating) / f, (p.validatingMicros - q.validatingMicros) / f}
}

// The processes whose CPU a burst measures: the webhook is whatever serves at the registered
// address (the floor, the limit or flowauth); the clients are this program.
var processes = []string{"kube-apiserver", "etcd", "webhook", "clients"}

func main() {
	n := flag.Int("n", 2000, "pods per burst")
	workers := flag.Int("c", 32, "concurrent creators")
	rounds := flag.Int("rounds", 3, "alternating rounds (medians are reported)")
	bench := flag.String("bench", "../shared/bench/admload", "the admload module, for the floor (read-only is fine)")
	profileDir := flag.String("profile", "", "folder to write CPU profiles of the last round to: the API server's for every way (apiserver-WAY.pprof), flowauth's for its own (webhook-flowauth.pprof)")
	only := flag.String("ways", "", "comma-separated ways to run (default all): "+strings.Join(allWays, ", "))
	profileFor := flag.Duration("profile-for", 2*time.Second, "length of each profile, from the start of the burst (whole seconds; keep it below the burst's length)")
	page := flag.String("results", "", "write the report into this page's \"make burst\" section (make burst: docs/performance.md)")
	flag.Parse()
	logf.SetLogger(logr.Discard())
	// Output piped into a reader that quits (make burst | head) must not kill this process before
	// it stops the control plane it started: a write to the closed pipe then just fails.
	signal.Ignore(syscall.SIGPIPE)
	ways := allWays
	if *only != "" {
		ways = strings.Split(*only, ",")
		for _, w := range ways {
			if !slices.Contains(allWays, w) {
				fmt.Fprintf(os.Stderr, "burst: -ways: no way %q (%s)\n", w, strings.Join(allWays, ", "))
				os.Exit(2)
			}
		}
	}
	report := results.New("burst")
	if err := run(report.Out(), ways, *n, *workers, *rounds, *bench, *profileDir, *profileFor); err != nil {
		fmt.Fprintln(os.Stderr, "burst:", err)
		os.Exit(1)
	}
	if err := report.Write(*page); err != nil {
		fmt.Fprintln(os.Stderr, "burst:", err)
		os.Exit(1)
	}
}

// allWays are every way, in the order each round runs them.
var allWays = []string{none, floor, patchedLimit, flowauth, trivialPolicy, patchedPolicy, policyMode}

func run(out io.Writer, ways []string, n, workers, rounds int, bench, profileDir string, profileFor time.Duration) error {
	root, _ := filepath.Abs(".")
	work, err := os.MkdirTemp("", "flowauth-burst-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(work) }()
	floorBin, limitBin := filepath.Join(work, "floor"), filepath.Join(work, "limit")
	for bin, pkg := range map[string]string{floorBin: "./cmd/floor", limitBin: "./cmd/limit"} {
		build := exec.CommandContext(context.Background(), "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, pkg)
		build.Dir, build.Env = bench, append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("building %s: %w\n%s", pkg, err, out)
		}
	}
	ctx := context.Background()
	pprofAddr, err := localcluster.FreeAddr()
	if err != nil {
		return err
	}
	c, err := localcluster.Start(ctx, localcluster.Options{RepoRoot: root, WorkDir: work, WebhookArgs: []string{"--log-level=error", "--pprof-bind-address=" + pprofAddr}})
	if err != nil {
		return err
	}
	defer func() { _ = c.Stop() }()
	controlPlane, err := c.ControlPlanePIDs()
	if err != nil {
		return err
	}
	apiserver, err := rest.HTTPClientFor(c.Config)
	if err != nil {
		return err
	}
	var registered admissionregistrationv1.MutatingWebhookConfiguration
	if err := c.Client.Get(ctx, client.ObjectKey{Name: "webhook-configuration"}, &registered); err != nil {
		return err
	}
	addr, certDir := c.WebhookServing()
	patch := flowauthPatch(ctx, c)
	if len(patch) == 0 {
		return fmt.Errorf("flowauth answered a burst pod with no patch")
	}
	patchFile := filepath.Join(work, "patch.json")
	if err := os.WriteFile(patchFile, patch, 0o600); err != nil {
		return err
	}

	policies, err := burstPolicies(patch)
	if err != nil {
		return err
	}
	var standIn *exec.Cmd // the floor or the limit, serving in flowauth's place
	stopStandIn := func() {
		if standIn != nil {
			_ = standIn.Process.Kill()
			_ = standIn.Wait()
			standIn = nil
		}
	}
	defer stopStandIn()
	// setUp makes the API server call what way says, on the same address with the same certificate.
	setUp := func(way string) error {
		// Only the way's own policies exist while it runs.
		for w, objects := range policies {
			for _, o := range objects {
				if w == way {
					if err := c.Client.Create(ctx, o.DeepCopyObject().(client.Object)); err != nil && !apierrors.IsAlreadyExists(err) {
						return err
					}
				} else if err := c.Client.Delete(ctx, o.DeepCopyObject().(client.Object)); err != nil && !apierrors.IsNotFound(err) {
					return err
				}
			}
		}
		var mwc admissionregistrationv1.MutatingWebhookConfiguration
		present := c.Client.Get(ctx, client.ObjectKey{Name: registered.Name}, &mwc) == nil
		if way == none || policies[way] != nil {
			if present {
				return c.Client.Delete(ctx, &mwc)
			}
			return nil
		}
		if !present {
			again := registered.DeepCopy()
			again.ResourceVersion, again.UID = "", ""
			if err := c.Client.Create(ctx, again); err != nil {
				return err
			}
		}
		if err := c.StopWebhook(); err != nil {
			return err
		}
		stopStandIn()
		switch way {
		case floor:
			standIn = exec.CommandContext(ctx, floorBin, "-addr", addr, "-cert-dir", certDir)
		case patchedLimit:
			standIn = exec.CommandContext(ctx, limitBin, "-addr", addr, "-cert-dir", certDir, "-patch", patchFile)
		default:
			return c.RestartWebhook(ctx)
		}
		if err := standIn.Start(); err != nil {
			return err
		}
		return c.WaitServing(ctx)
	}

	results := map[string][]outcome{}
	fmt.Fprintf(out, "burst: %d flow-run pods by %d concurrent clients, %d alternating rounds per way, medians (the API server, etcd, the webhook and the clients share the machine)\n\n", n, workers, rounds)
	for r := range rounds {
		for _, way := range ways {
			if err := setUp(way); err != nil {
				return fmt.Errorf("%s: %w", way, err)
			}
			// The API server sees a configuration change through its informer: let it settle.
			time.Sleep(2 * time.Second)
			ns := fmt.Sprintf("burst-%d-%d", r, slices.Index(allWays, way))
			labels := map[string]string{"flowauth.io/injection": "enabled"}
			if policies[way] != nil {
				labels = map[string]string{wayLabel: strings.ReplaceAll(way, " ", "-")}
			}
			if err := c.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}); err != nil {
				return err
			}
			if policies[way] != nil {
				if err := waitForPolicies(ctx, c.Client, ns); err != nil {
					return fmt.Errorf("%s: %w", way, err)
				}
			}
			pids := map[string]int{"kube-apiserver": controlPlane["kube-apiserver"], "etcd": controlPlane["etcd"], "clients": os.Getpid()}
			switch {
			case standIn != nil:
				pids["webhook"] = standIn.Process.Pid
			case way == flowauth:
				pids["webhook"] = c.WebhookPID()
			}
			var profiles []profile
			if profileDir != "" && r == rounds-1 {
				name := strings.ReplaceAll(way, " ", "-")
				profiles = append(profiles, profile{apiserver, strings.TrimSuffix(c.Config.Host, "/") + "/debug/pprof/profile", filepath.Join(profileDir, "apiserver-"+name+".pprof")})
				if way == flowauth {
					profiles = append(profiles, profile{http.DefaultClient, "http://" + pprofAddr + "/debug/pprof/profile", filepath.Join(profileDir, "webhook-flowauth.pprof")})
				}
			}
			costBefore, err := readPolicyCost(ctx, apiserver, c.Config.Host)
			if err != nil {
				return err
			}
			o, err := measuredBurst(ctx, c.Client, ns, n, workers, pids, profiles, profileFor)
			if err != nil {
				return err
			}
			costAfter, err := readPolicyCost(ctx, apiserver, c.Config.Host)
			if err != nil {
				return err
			}
			o.policies = costAfter.minus(costBefore, n)
			results[way] = append(results[way], o)
			fmt.Fprintf(os.Stderr, "round %d, %s: %.0f pods/s, p50 %s, p99 %s, %d failed, %d injected\n", r+1, way, o.podsPerSecond, o.p50, o.p99, o.failed, o.injected)
			_ = c.Client.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
			if (way == flowauth || way == patchedLimit || way == patchedPolicy || way == policyMode) && (o.failed > 0 || o.injected != int64(n)) {
				return fmt.Errorf("flowauth: %d failed, %d of %d injected; first error: %s", o.failed, o.injected, n, o.firstErr)
			}
			if o.failed > 0 {
				return fmt.Errorf("%s: %d failed; first error: %s", way, o.failed, o.firstErr)
			}
		}
	}
	fmt.Fprintf(out, "| way | pods/s | create p50 | create p99 | failed | injected |\n|---|---|---|---|---|---|\n")
	med := map[string]outcome{}
	for _, way := range ways {
		m := median(results[way])
		med[way] = m
		injected := "-"
		if way == flowauth || way == patchedLimit || way == patchedPolicy || way == policyMode {
			injected = fmt.Sprintf("%d of %d", m.injected, n)
		}
		fmt.Fprintf(out, "| %s | %.0f | %s | %s | %d | %s |\n", way, m.podsPerSecond, m.p50.Round(100*time.Microsecond), m.p99.Round(100*time.Microsecond), m.failed, injected)
	}
	fmt.Fprintf(out, "\nCPU per pod created (µs; medians; the webhook is whatever serves at the registered address):\n\n| way | kube-apiserver | etcd | webhook | clients | total |\n|---|---|---|---|---|---|\n")
	for _, way := range ways {
		m, total := med[way], 0.0
		fmt.Fprintf(out, "| %s |", way)
		for _, p := range processes {
			fmt.Fprintf(out, " %.0f |", m.cpu[p])
			total += m.cpu[p]
		}
		fmt.Fprintf(out, " %.0f |\n", total)
	}
	fmt.Fprintf(out, "\nThe API server's admission-policy metrics per pod (medians; a mutating policy counts one check per mutation):\n\n| way | mutating checks | their µs | validating checks | their µs |\n|---|---|---|---|---|\n")
	for _, way := range ways {
		if policies[way] == nil {
			continue
		}
		p := med[way].policies
		fmt.Fprintf(out, "| %s | %.2f | %.0f | %.2f | %.0f |\n", way, p.mutating, p.mutatingMicros, p.validating, p.validatingMicros)
	}
	fmt.Fprintf(out, "\nRatios within this run (throughput, and p99 of the create time):\n\n")
	for _, r := range ratios {
		of, ofRan := med[r.of]
		to, toRan := med[r.to]
		if !ofRan || !toRan {
			continue // a -ways run without one of the two
		}
		fmt.Fprintf(out, "- %s (%s / %s): throughput %.2f%s, p99 %.2f\n", r.what, r.of, r.to,
			of.podsPerSecond/to.podsPerSecond, r.target, float64(of.p99)/float64(to.p99))
	}
	return nil
}

// ratios are the comparisons the report ends with: each isolates one cost, and two carry the targets
// docs/contributing/performance.md argues for (the webhook's own work against a webhook that only
// answers with its patch; the policies' decisions against a policy that only applies that patch).
var ratios = []struct{ what, of, to, target string }{
	{"calling a webhook", floor, none, ""},
	{"applying and storing flowauth's mutation", patchedLimit, floor, ""},
	{"flowauth's own work", flowauth, patchedLimit, " (target >= 0.95)"},
	{"flowauth against the floor registered", flowauth, floor, ""},
	{"the policy machinery", trivialPolicy, none, ""},
	{"applying and storing flowauth's mutation by a policy", patchedPolicy, trivialPolicy, ""},
	{"flowauth's decisions in CEL", policyMode, patchedPolicy, " (target >= 0.80)"},
	{"flowauth's policies against the trivial policy", policyMode, trivialPolicy, ""},
	{"policy mode against the webhook", policyMode, flowauth, ""},
}

// burstPolicies are the policy ways' objects: a trivial MutatingAdmissionPolicy that adds one
// annotation to flow-run pods, and flowauth's compiled policies, each bound to its namespaces.
func burstPolicies(patch []byte) (map[string][]runtime.Object, error) {
	selector := func(way string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{wayLabel: strings.ReplaceAll(way, " ", "-")}}
	}
	p, err := policy.Compile(secretmap.Builtin(), policy.Options{Name: "burst", NamespaceSelector: selector(policyMode)})
	if err != nil {
		return nil, err
	}
	var compiled []runtime.Object
	for _, o := range p.Objects() {
		compiled = append(compiled, o.(runtime.Object))
	}
	trivial := p.Mutating.DeepCopy()
	trivial.Name = "burst-trivial"
	trivial.Spec.Variables = nil
	trivial.Spec.MatchConditions = p.Mutating.Spec.MatchConditions[:1]
	trivial.Spec.Mutations = []admissionregistrationv1.Mutation{{PatchType: admissionregistrationv1.PatchTypeJSONPatch,
		JSONPatch: &admissionregistrationv1.JSONPatch{Expression: `[JSONPatch{op: 'add', path: '/metadata/annotations/flowauth.io~1burst', value: 'trivial'}]`}}}
	binding := p.MutatingBinding.DeepCopy()
	binding.Name, binding.Spec.PolicyName = trivial.Name, trivial.Name
	binding.Spec.MatchResources.NamespaceSelector = selector(trivialPolicy)
	constant, err := constantPatch(patch)
	if err != nil {
		return nil, err
	}
	patched := p.Mutating.DeepCopy()
	patched.Name = "burst-patched"
	patched.Spec.Variables = nil
	patched.Spec.Mutations = []admissionregistrationv1.Mutation{{PatchType: admissionregistrationv1.PatchTypeJSONPatch,
		JSONPatch: &admissionregistrationv1.JSONPatch{Expression: constant}}}
	patchedBinding := p.MutatingBinding.DeepCopy()
	patchedBinding.Name, patchedBinding.Spec.PolicyName = patched.Name, patched.Name
	patchedBinding.Spec.MatchResources.NamespaceSelector = selector(patchedPolicy)
	return map[string][]runtime.Object{trivialPolicy: {trivial, binding}, patchedPolicy: {patched, patchedBinding}, policyMode: compiled}, nil
}

// constantPatch writes a JSON Patch as a CEL list of JSONPatch, each value typed as the pod field
// its path names (Kubernetes' CEL takes an object for a struct field, not a map): the type of
// /spec/containers/0/env/- is Object.spec.containers.env.
func constantPatch(patch []byte) (string, error) {
	var ops []struct {
		Op    string `json:"op"`
		Path  string `json:"path"`
		Value any    `json:"value"`
	}
	if err := json.Unmarshal(patch, &ops); err != nil {
		return "", err
	}
	var out []string
	for _, op := range ops {
		typ := "Object"
		for _, part := range strings.Split(strings.TrimPrefix(op.Path, "/"), "/") {
			if _, err := strconv.Atoi(part); err == nil || part == "-" {
				continue
			}
			typ += "." + part
		}
		if strings.HasPrefix(op.Path, "/metadata/annotations") {
			typ = "" // a map of strings: literal as JSON
		}
		out = append(out, fmt.Sprintf("JSONPatch{op: %q, path: %q, value: %s}", op.Op, op.Path, celValue(op.Value, typ)))
	}
	return "[" + strings.Join(out, ", ") + "]", nil
}

// celValue is v as a CEL literal, objects typed as typ ("" for a plain map).
func celValue(v any, typ string) string {
	switch v := v.(type) {
	case map[string]any:
		keys := slices.Sorted(maps.Keys(v))
		var fields []string
		for _, k := range keys {
			if typ == "" {
				fields = append(fields, fmt.Sprintf("%q: %s", k, celValue(v[k], "")))
			} else {
				fields = append(fields, fmt.Sprintf("%s: %s", k, celValue(v[k], typ+"."+k)))
			}
		}
		if typ == "" {
			return "{" + strings.Join(fields, ", ") + "}"
		}
		return typ + "{" + strings.Join(fields, ", ") + "}"
	case []any:
		var items []string
		for _, item := range v {
			items = append(items, celValue(item, typ))
		}
		return "[" + strings.Join(items, ", ") + "]"
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
}

// waitForPolicies waits until the API server runs the way's policies in ns (it loads them a
// moment after they exist): a dry-run burst pod comes back changed.
func waitForPolicies(ctx context.Context, c client.Client, ns string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		pod := burstPod(ns, 0)
		if err := c.Create(ctx, pod, client.DryRunAll); err != nil {
			return err
		}
		if len(pod.Annotations) > len(burstPod(ns, 0).Annotations) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the API server did not run the policies within 30 s")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// burstPod is the i-th pod of a burst in ns.
func burstPod(ns string, i int) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("burst-%05d", i), Namespace: ns,
			Labels:      map[string]string{"prefect.io/flow-run-id": fmt.Sprintf("00000000-0000-4000-8000-%012d", i)},
			Annotations: map[string]string{"flowauth.io/secrets": "AWS_CREDENTIALS, GCP_CREDENTIALS"},
		},
		Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "flow", Image: "prefecthq/prefect:3-python3.12"}}},
	}
}

// flowauthPatch is flowauth's JSON Patch for a burst pod, asked of the registered flowauth over TLS
// as the API server asks it (nil if it answers none).
func flowauthPatch(ctx context.Context, c *localcluster.Cluster) []byte {
	pod := burstPod("burst-patch", 0)
	// flowauth serves only namespaces that exist and are opted in (a review naming another is
	// let through untouched).
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: pod.Namespace, Labels: map[string]string{"flowauth.io/injection": "enabled"}}}
	if err := c.Client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil
	}
	raw, _ := json.Marshal(pod)
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "burst", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, Operation: admissionv1.Create,
			Namespace: pod.Namespace, Object: runtime.RawExtension{Raw: raw}},
	}
	body, _ := json.Marshal(review)
	answer, _, err := localcluster.Review(ctx, localcluster.TLSClient(c.WebhookCA()), c.WebhookURL(), body)
	if err != nil || answer == nil {
		return nil
	}
	return answer.Patch
}

// profile is a CPU profile to take during a burst: from url (a /debug/pprof/profile endpoint) with
// client, into file.
type profile struct {
	client    *http.Client
	url, file string
}

// measuredBurst runs burst and adds each process's CPU time per pod during it (pids by the names in
// processes; a name without a pid gets 0). The profiles are taken over the first profileFor of it.
func measuredBurst(ctx context.Context, c client.Client, ns string, n, workers int, pids map[string]int, profiles []profile, profileFor time.Duration) (outcome, error) {
	var profiling errgroup.Group
	for _, p := range profiles {
		profiling.Go(func() error { return localcluster.SaveCPUProfile(ctx, p.client, p.url, profileFor, p.file) })
	}
	before := map[string]time.Duration{}
	for name, pid := range pids {
		before[name] = localcluster.CPUTime(pid)
	}
	o := burst(ctx, c, ns, n, workers)
	o.cpu = map[string]float64{}
	for name, pid := range pids {
		o.cpu[name] = float64((localcluster.CPUTime(pid) - before[name]).Microseconds()) / float64(n)
	}
	return o, profiling.Wait()
}

// burst creates n flow-run pods in ns with workers concurrent clients and times each create.
func burst(ctx context.Context, c client.Client, ns string, n, workers int) outcome {
	var failed, injected atomic.Int64
	var firstErr atomic.Value
	latencies := make([]time.Duration, n)
	jobs := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for i := range jobs {
				pod := burstPod(ns, i)
				t0 := time.Now()
				err := c.Create(ctx, pod)
				latencies[i] = time.Since(t0)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				if pod.Annotations["flowauth.io/status"] == "injected=AWS_CREDENTIALS,GCP_CREDENTIALS" {
					injected.Add(1)
				}
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(latencies)
	o := outcome{podsPerSecond: float64(n) / elapsed.Seconds(), p50: latencies[n/2], p99: latencies[n*99/100],
		failed: failed.Load(), injected: injected.Load()}
	if e, ok := firstErr.Load().(string); ok {
		o.firstErr = e
	}
	return o
}

// median takes each figure's median separately across rounds.
func median(rounds []outcome) outcome {
	pick := func(f func(outcome) float64) float64 { return localcluster.Median(rounds, f) }
	var failed int64
	for _, o := range rounds {
		failed += o.failed
	}
	cpu := map[string]float64{}
	for _, p := range processes {
		cpu[p] = pick(func(o outcome) float64 { return o.cpu[p] })
	}
	return outcome{
		cpu:           cpu,
		podsPerSecond: pick(func(o outcome) float64 { return o.podsPerSecond }),
		p50:           time.Duration(pick(func(o outcome) float64 { return float64(o.p50) })),
		p99:           time.Duration(pick(func(o outcome) float64 { return float64(o.p99) })),
		injected:      int64(pick(func(o outcome) float64 { return float64(o.injected) })),
		failed:        failed,
		policies: policyCost{
			mutating:         pick(func(o outcome) float64 { return o.policies.mutating }),
			mutatingMicros:   pick(func(o outcome) float64 { return o.policies.mutatingMicros }),
			validating:       pick(func(o outcome) float64 { return o.policies.validating }),
			validatingMicros: pick(func(o outcome) float64 { return o.policies.validatingMicros }),
		},
	}
}
