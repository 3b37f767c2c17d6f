// Command webhook is flowauth's admission webhook server (DESIGN.md §6). main only parses flags and
// wires library parts together; every decision lives in pkg/mutate.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/peterbourgon/ff/v3"
	"go.uber.org/zap/zapcore"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/flowauth/flowauth/pkg/mutate"
	"github.com/flowauth/flowauth/pkg/secretkeys"
)

// version is the release this binary was built as (-ldflags "-X main.version=..."; make release
// and the Dockerfile's VERSION argument set it).
var version = "dev"

// envPrefix: any flag can also be set as FLOWAUTH_<FLAG_IN_CAPS> (dashes become underscores).
const envPrefix = "FLOWAUTH"

// config is the binary's whole interface.
type config struct {
	port                   int
	certDir                string
	kubeconfig             string
	clusterConnection      bool
	namespaceDefaults      bool
	namespaceSelector      string
	requireAllowList       bool
	clientCAFile           string
	clientNames            []string
	secretMap              string
	secretLookup           string
	secretLookupNamespaces []string
	keyWatch               secretkeys.Options
	skipContainers         []string
	missingSecret          string
	metricsBindAddress     string
	healthProbeBindAddress string
	pprofBindAddress       string
	logFormat              string
	logLevel               string
	enableHTTP2            bool
	shutdownDelay          time.Duration
	certs                  certConfig
}

// certConfig: with rotation on, cert-controller keeps a CA and serving certificate in a Secret
// and injects the CA into the webhook configuration; the Secret is mounted at --cert-dir.
type certConfig struct {
	rotation             bool
	secret               string // NAMESPACE/NAME
	dnsName              string
	webhookConfiguration string
	validity             time.Duration
}

// enum is a string flag that accepts only listed values, so a typo stops the binary at start
// with a message naming the flag and what is allowed.
type enum struct {
	value   *string
	allowed []string
}

func (e enum) String() string {
	if e.value == nil {
		return ""
	}
	return *e.value
}

func (e enum) Set(s string) error {
	if !slices.Contains(e.allowed, s) {
		return fmt.Errorf("%q is not one of: %s", s, strings.Join(e.allowed, ", "))
	}
	*e.value = s
	return nil
}

func newEnum(fs *flag.FlagSet, p *string, name, def, usage string, allowed ...string) {
	*p = def
	fs.Var(enum{value: p, allowed: allowed}, name, fmt.Sprintf("%s (one of: %s)", usage, strings.Join(allowed, ", ")))
}

// commaList sets *dst to a flag's comma-separated items, blanks dropped.
func commaList(dst *[]string) func(string) error {
	return func(v string) error {
		*dst = nil
		for _, item := range strings.Split(v, ",") {
			if item = strings.TrimSpace(item); item != "" {
				*dst = append(*dst, item)
			}
		}
		return nil
	}
}

// newFlagSet defines every flag, into c; docs/configuration.md's table of flags is made from it
// (TestFlagsReferenceIsCurrent).
func newFlagSet(c *config) *flag.FlagSet {
	fs := flag.NewFlagSet("webhook", flag.ContinueOnError)
	fs.IntVar(&c.port, "port", 9443, "webhook TLS port")
	fs.StringVar(&c.certDir, "cert-dir", "/tmp/k8s-webhook-server/serving-certs", "folder holding tls.crt and tls.key; reloaded when they change")
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig for API access (default: in-cluster); not used with --cluster-connection=false")
	fs.BoolVar(&c.clusterConnection, "cluster-connection", true, "read Namespaces (whether one is served, its defaults and its administrator's allow-lists) and record Events through the API server. false runs with no API access at all: namespace allow-lists are then NOT enforced, and the flags that need the API server (--namespace-defaults, --secret-lookup=keys, --require-allow-list, --namespace-selector, --cert-rotation) are refused")
	fs.BoolVar(&c.namespaceDefaults, "namespace-defaults", true, "read the flowauth.io/secrets defaults annotation from Namespaces")
	fs.StringVar(&c.namespaceSelector, "namespace-selector", "", "label selector of the namespaces the webhook serves, as its configurations' namespaceSelector says (the chart sets it), e.g. flowauth.io/injection=enabled; a request naming any other namespace did not come from the API server and is let through untouched, with nothing looked up. Default: every namespace")
	fs.BoolVar(&c.requireAllowList, "require-allow-list", false, "refuse to inject anything in a namespace whose administrator has not set the "+mutate.AnnotationAllowedSecrets+" annotation (docs/security.md)")
	fs.StringVar(&c.clientCAFile, "client-ca-file", "", "PEM file of the CA that issued the API server's client certificate for webhooks (its AdmissionConfiguration kubeConfigFile): when set, the webhook port answers only clients presenting a certificate from it. Read at start")
	fs.Func("client-names", "comma-separated names (certificate common name or DNS SAN) the client certificate must carry, with --client-ca-file; default any certificate the CA issued", commaList(&c.clientNames))
	fs.StringVar(&c.secretMap, "secret-map", "", "YAML file extending or overriding the built-in secret map; reloaded when it changes")
	newEnum(fs, &c.secretLookup, "secret-lookup", "none", "look up which Secret keys exist", "none", "keys")
	fs.Func("secret-lookup-namespaces", "comma-separated namespaces whose Secret and ConfigMap key names are watched (with --secret-lookup=keys); default all, which needs cluster-wide list/watch", commaList(&c.secretLookupNamespaces))
	fs.StringVar(&c.keyWatch.SecretFieldSelector, "secret-field-selector", secretkeys.DefaultSecretFieldSelector, "field selector of the Secrets whose key names are watched (with --secret-lookup=keys); the default leaves out Helm releases, service-account tokens and image-pull Secrets. A declared Secret outside it is read from the API server when a flow run names it")
	fs.StringVar(&c.keyWatch.SecretLabelSelector, "secret-label-selector", "", "label selector of the Secrets whose key names are watched (with --secret-lookup=keys), e.g. flowauth.io/credentials=true; default all. A declared Secret outside it is read from the API server when a flow run names it")
	fs.StringVar(&c.keyWatch.ConfigMapLabelSelector, "configmap-label-selector", secretkeys.DefaultConfigMapLabelSelector, "label selector of the ConfigMaps whose key names are watched (with --secret-lookup=keys, for envFrom); the default leaves out Helm's release records")
	fs.Int64Var(&c.keyWatch.MaxTotalKeyBytes, "key-cache-max-bytes", secretkeys.DefaultMaxTotalKeyBytes, "bound on the key names the key cache keeps for all Secrets and ConfigMaps together (with --secret-lookup=keys): past it, further objects are kept as not known and read from the API server when a pod names one (flowauth_key_cache_over_budget_objects); negative: no bound")
	c.skipContainers = mutate.DefaultSkipContainers
	fs.Func("skip-containers", "comma-separated container names never injected unless a pod names them in flowauth.io/containers (default: the common meshes' proxies and init containers, "+strings.Join(mutate.DefaultSkipContainers, ",")+"); empty skips none", func(v string) error {
		c.skipContainers = []string{}
		for _, name := range strings.Split(v, ",") {
			if name = strings.TrimSpace(name); name == "" {
				continue
			}
			if msgs := validation.IsDNS1123Label(name); len(msgs) > 0 {
				return fmt.Errorf("%q is not a container name: %s", name, strings.Join(msgs, "; "))
			}
			c.skipContainers = append(c.skipContainers, name)
		}
		return nil
	})
	newEnum(fs, &c.missingSecret, "missing-secret", "warn", "what to do when a declared Secret or required key is missing (with --secret-lookup=keys)", "warn", "deny", "ignore")
	fs.StringVar(&c.metricsBindAddress, "metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint (0 disables it)")
	fs.StringVar(&c.healthProbeBindAddress, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	fs.StringVar(&c.pprofBindAddress, "pprof-bind-address", "0", "address of Go's CPU and heap profiles (/debug/pprof/), for profiling under load; 0 (the default) disables it. Plain HTTP without authentication: bind it to 127.0.0.1 or a port no Service exposes")
	newEnum(fs, &c.logFormat, "log-format", "text", "log encoding", "text", "json")
	newEnum(fs, &c.logLevel, "log-level", "info", "least severe level logged (debug logs every admission, never a secret value)", "debug", "info", "error")
	fs.BoolVar(&c.certs.rotation, "cert-rotation", false, "provision and rotate a CA and serving certificate with cert-controller, kept in --cert-secret (mounted at --cert-dir) and injected into --webhook-configuration; serving starts once the certificate is in place")
	fs.StringVar(&c.certs.secret, "cert-secret", "", "NAMESPACE/NAME of the Secret that holds the CA and serving certificate (with --cert-rotation)")
	fs.StringVar(&c.certs.dnsName, "cert-dns-name", "", "DNS name the serving certificate is issued for, the Service's <name>.<namespace>.svc (with --cert-rotation)")
	fs.StringVar(&c.certs.webhookConfiguration, "webhook-configuration", "", "name of the MutatingWebhookConfiguration and ValidatingWebhookConfiguration whose caBundle is kept current (with --cert-rotation)")
	fs.DurationVar(&c.certs.validity, "cert-validity", 365*24*time.Hour, "lifetime of each serving certificate (with --cert-rotation); it is renewed when a quarter of it is left")
	fs.DurationVar(&c.shutdownDelay, "shutdown-delay", 5*time.Second, "on SIGTERM, report not ready and keep serving this long, so the Service stops sending new requests; then finish the requests in flight and exit")
	fs.BoolVar(&c.enableHTTP2, "enable-http2", false, "serve HTTP/2; off by default because of the HTTP/2 stream-reset CVEs (CVE-2023-44487, CVE-2023-39325)")
	return fs
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := newFlagSet(&c)
	// Usage is printed for --help only: on a bad value main's one-line error says it all.
	fs.SetOutput(io.Discard)
	if err := ff.Parse(fs, args, ff.WithEnvVarPrefix(envPrefix)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(os.Stderr, "Usage of webhook (every flag can also be set as %s_<FLAG>, e.g. %s_SECRET_LOOKUP=keys):\n", envPrefix, envPrefix)
			fs.SetOutput(os.Stderr)
			fs.PrintDefaults()
		}
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if c.port < 1 || c.port > 65535 {
		return c, fmt.Errorf("invalid value %d for flag -port: must be between 1 and 65535", c.port)
	}
	for _, a := range []struct{ flag, value string }{
		{"metrics-bind-address", c.metricsBindAddress}, {"health-probe-bind-address", c.healthProbeBindAddress}, {"pprof-bind-address", c.pprofBindAddress},
	} {
		if err := checkBindAddress(a.flag, a.value); err != nil {
			return c, err
		}
	}
	if err := c.certs.validate(); err != nil {
		return c, err
	}
	if !c.clusterConnection {
		var needs []string
		for _, f := range []struct {
			flag string
			on   bool
		}{
			{"-namespace-defaults (default true: set it to false)", c.namespaceDefaults},
			{"-secret-lookup=keys", c.secretLookup == "keys"},
			{"-require-allow-list", c.requireAllowList},
			{"-namespace-selector", c.namespaceSelector != ""},
			{"-cert-rotation", c.certs.rotation},
		} {
			if f.on {
				needs = append(needs, f.flag)
			}
		}
		if len(needs) > 0 {
			return c, fmt.Errorf("flag -cluster-connection=false runs without the API server, which %s needs", strings.Join(needs, ", "))
		}
	}
	if len(c.clientNames) > 0 && c.clientCAFile == "" {
		return c, errors.New("flag -client-names needs -client-ca-file")
	}
	c.keyWatch.Namespaces = c.secretLookupNamespaces
	for _, sel := range []struct {
		flag, value string
		parse       func(string) error
	}{
		{"secret-field-selector", c.keyWatch.SecretFieldSelector, func(v string) error { _, err := fields.ParseSelector(v); return err }},
		{"secret-label-selector", c.keyWatch.SecretLabelSelector, func(v string) error { _, err := labels.Parse(v); return err }},
		{"configmap-label-selector", c.keyWatch.ConfigMapLabelSelector, func(v string) error { _, err := labels.Parse(v); return err }},
		{"namespace-selector", c.namespaceSelector, func(v string) error { _, err := labels.Parse(v); return err }},
	} {
		if err := sel.parse(sel.value); err != nil {
			return c, fmt.Errorf("invalid value %q for flag -%s: %w", sel.value, sel.flag, err)
		}
	}
	return c, nil
}

// checkBindAddress accepts 0 (the server is off) or [HOST]:PORT, so a typo stops the binary at
// start naming the flag rather than failing later with only the listener's error.
func checkBindAddress(flag, value string) error {
	if value == "0" {
		return nil
	}
	_, port, err := net.SplitHostPort(value)
	if n, convErr := strconv.Atoi(port); err != nil || convErr != nil || n < 0 || n > 65535 {
		return fmt.Errorf("invalid value %q for flag -%s: want [HOST]:PORT (e.g. 127.0.0.1:6060 or :8080), or 0 to turn it off", value, flag)
	}
	return nil
}

func (cc certConfig) validate() error {
	if !cc.rotation {
		return nil
	}
	var missing []string
	for _, f := range []struct{ name, value string }{
		{"-cert-secret", cc.secret}, {"-cert-dns-name", cc.dnsName}, {"-webhook-configuration", cc.webhookConfiguration},
	} {
		if f.value == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("flag -cert-rotation needs %s", strings.Join(missing, ", "))
	}
	if ns, name, ok := strings.Cut(cc.secret, "/"); !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return fmt.Errorf("invalid value %q for flag -cert-secret: want NAMESPACE/NAME", cc.secret)
	}
	if cc.validity < time.Minute {
		return fmt.Errorf("invalid value %s for flag -cert-validity: must be at least 1m", cc.validity)
	}
	return nil
}

func newLogger(c config) zap.Opts {
	level := map[string]zapcore.Level{"debug": zapcore.DebugLevel, "info": zapcore.InfoLevel, "error": zapcore.ErrorLevel}[c.logLevel]
	return func(o *zap.Options) {
		o.Development = false
		o.Level = level
		if c.logFormat == "json" {
			o.Encoder = zapcore.NewJSONEncoder(zapcore.EncoderConfig{
				TimeKey: "ts", LevelKey: "level", NameKey: "logger", MessageKey: "msg", StacktraceKey: "stacktrace",
				EncodeTime: zapcore.ISO8601TimeEncoder, EncodeLevel: zapcore.LowercaseLevelEncoder, EncodeDuration: zapcore.StringDurationEncoder,
			})
		} else {
			o.Encoder = zapcore.NewConsoleEncoder(zapcore.EncoderConfig{
				TimeKey: "ts", LevelKey: "level", NameKey: "logger", MessageKey: "msg",
				EncodeTime: zapcore.ISO8601TimeEncoder, EncodeLevel: zapcore.CapitalLevelEncoder, EncodeDuration: zapcore.StringDurationEncoder,
			})
		}
	}
}

func main() {
	c, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "webhook:", err)
		os.Exit(2)
	}
	ctrl.SetLogger(zap.New(newLogger(c)))
	ctrl.Log.WithName("setup").Info("flowauth webhook", "version", version)
	ctrl.Log.WithName("setup").Info("garbage collector", "GOGC", setGCPercent(os.LookupEnv), "GOMEMLIMIT", setMemoryLimit(context.Background(), os.LookupEnv, c.secretLookup))
	if err := run(drainOnSignal(c.shutdownDelay), c); err != nil {
		ctrl.Log.Error(err, "webhook stopped")
		os.Exit(1)
	}
}

// defaultGCPercent is the binary's GOGC unless the GOGC environment variable sets one. The
// webhook's live heap is small (2-3 MiB, mostly type registrations), and every admission
// allocates about 20 KiB, so at Go's default of 100 the collector runs every few hundred
// admissions and takes a fifth of the CPU under load. At 125 it runs a fifth less often: 7% less
// CPU per flow-run admission for about 1 MiB more RSS under load (docs/contributing/performance.md).
const defaultGCPercent = 125

// setGCPercent applies defaultGCPercent when GOGC is not set, and returns the setting in force.
func setGCPercent(lookupEnv func(string) (string, bool)) string {
	if v, set := lookupEnv("GOGC"); set {
		return v
	}
	debug.SetGCPercent(defaultGCPercent)
	return strconv.Itoa(defaultGCPercent)
}

// defaultMemoryLimit is the binary's soft memory limit (GOMEMLIMIT) unless the environment sets
// one, when Secret keys are not looked up. The Go runtime's own memory then stays under it: at
// high concurrency the heap would otherwise grow with the requests in flight past the live heap's
// 2.25x (GOGC 125), and RSS (about 20 MiB of it the binary's own pages) past 40 MiB. Under the
// limit the collector runs more often only at such peaks. It was 18 MiB (at c=32 RSS peaked at
// 37.5 instead of 40.6 MiB), but then one 3 MiB review, whose decoded pod alone holds about
// 10 MiB, made the collector run without pause: 330 ms for a pod of 50,000 mounts against 51 ms
// (make hostile, docs/contributing/performance.md). 32 MiB leaves the largest review room; what keeps such
// reviews from adding up is that they are handled a few at a time (pkg/admission). With
// --secret-lookup=keys the live heap grows with the cluster's Secrets, so the limit follows it
// (followLiveHeap): defaultMemoryLimit above the live heap. Without that, the collector's room was
// GOGC's 1.25x the live heap, and a 2.5 MiB review lifted the peak RSS by 18-21 MiB where it
// lifts it by 6-8 without a connection (make hostile, docs/contributing/performance.md).
const defaultMemoryLimit = 32 << 20

// setMemoryLimit applies defaultMemoryLimit when GOMEMLIMIT is not set (with key lookup, above
// the live heap, kept so every few seconds), and returns the setting in force.
func setMemoryLimit(ctx context.Context, lookupEnv func(string) (string, bool), secretLookup string) string {
	if v, set := lookupEnv("GOMEMLIMIT"); set {
		return v
	}
	if secretLookup != "none" {
		followLiveHeap(ctx, 5*time.Second)
		return strconv.Itoa(defaultMemoryLimit>>20) + "MiB above the live heap (key lookup: the heap grows with the cluster's Secrets)"
	}
	debug.SetMemoryLimit(defaultMemoryLimit)
	return strconv.Itoa(defaultMemoryLimit>>20) + "MiB"
}

// followers are the followLiveHeap goroutines running (a test waits for its own to end).
var followers sync.WaitGroup

// followLiveHeap sets the soft memory limit to defaultMemoryLimit above the live heap (what the
// last collection kept: mostly the key cache), now and every interval until ctx ends. The room
// for requests is then the same whatever the cluster's size, not a share of it.
func followLiveHeap(ctx context.Context, interval time.Duration) {
	set := func() {
		sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		metrics.Read(sample)
		// 0 until the first collection ends: no limit yet rather than one that would make
		// the collector run hard while the key cache first fills.
		if sample[0].Value.Kind() == metrics.KindUint64 && sample[0].Value.Uint64() > 0 {
			live := min(sample[0].Value.Uint64(), math.MaxInt64-defaultMemoryLimit)
			debug.SetMemoryLimit(int64(live) + defaultMemoryLimit) // #nosec G115 -- bounded above
		}
	}
	set()
	followers.Add(1)
	go func() {
		defer followers.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				set()
			}
		}
	}()
}

// draining is set from the first SIGTERM on: readiness fails, the server keeps serving.
var draining atomic.Bool

// drainOnSignal returns a context that ends shutdownDelay after the first SIGTERM or SIGINT.
// Until then the webhook still serves but reports not ready, so the endpoints controller takes
// it out of the Service before it stops accepting: no admission fails during a rollout. A
// second signal exits at once.
func drainOnSignal(shutdownDelay time.Duration) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM, os.Interrupt)
	go func() {
		<-signals
		draining.Store(true)
		ctrl.Log.WithName("setup").Info("shutting down: not ready from now on, still serving", "delay", shutdownDelay)
		time.AfterFunc(shutdownDelay, cancel)
		<-signals
		os.Exit(1)
	}()
	return ctx
}

// notDraining is the readiness check that fails once shutdown has begun.
func notDraining(*http.Request) error {
	if draining.Load() {
		return errors.New("shutting down")
	}
	return nil
}
