package main

import (
	"context"
	"math"
	"reflect"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/flowauth/flowauth/pkg/mutate"
	"github.com/flowauth/flowauth/pkg/secretkeys"
)

func TestDefaultsMatchTheDesign(t *testing.T) {
	c, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := config{
		port: 9443, certDir: "/tmp/k8s-webhook-server/serving-certs", clusterConnection: true, namespaceDefaults: true,
		secretLookup: "none", missingSecret: "warn", metricsBindAddress: ":8080", healthProbeBindAddress: ":8081", pprofBindAddress: "0",
		logFormat: "text", logLevel: "info", shutdownDelay: 5 * time.Second, certs: certConfig{validity: 365 * 24 * time.Hour},
		keyWatch:       secretkeys.Options{SecretFieldSelector: secretkeys.DefaultSecretFieldSelector, ConfigMapLabelSelector: secretkeys.DefaultConfigMapLabelSelector, MaxTotalKeyBytes: secretkeys.DefaultMaxTotalKeyBytes},
		skipContainers: mutate.DefaultSkipContainers,
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("defaults = %+v\nwant       %+v", c, want)
	}
}

func TestEveryFlagCanComeFromTheEnvironment(t *testing.T) {
	t.Setenv("FLOWAUTH_PORT", "10443")
	t.Setenv("FLOWAUTH_SECRET_LOOKUP", "keys")
	t.Setenv("FLOWAUTH_NAMESPACE_DEFAULTS", "false")
	t.Setenv("FLOWAUTH_LOG_FORMAT", "json")
	t.Setenv("FLOWAUTH_SECRET_LOOKUP_NAMESPACES", "flows, etl,")
	c, err := parseFlags([]string{"--log-format=text"})
	if err != nil {
		t.Fatal(err)
	}
	if c.port != 10443 || c.secretLookup != "keys" || c.namespaceDefaults || !reflect.DeepEqual(c.secretLookupNamespaces, []string{"flows", "etl"}) {
		t.Errorf("env not applied: %+v", c)
	}
	if c.logFormat != "text" {
		t.Errorf("a command-line flag must win over the environment, got %q", c.logFormat)
	}
}

func TestInvalidValuesNameTheFlagAndWhatIsAllowed(t *testing.T) {
	tests := []struct {
		args []string
		env  [2]string
		want []string
	}{
		{args: []string{"--secret-lookup=all"}, want: []string{"-secret-lookup", `"all"`, "none, keys"}},
		{args: []string{"--missing-secret=block"}, want: []string{"-missing-secret", `"block"`, "warn, deny, ignore"}},
		{args: []string{"--log-level=trace"}, want: []string{"-log-level", "debug, info, error"}},
		{args: []string{"--port=0"}, want: []string{"-port", "between 1 and 65535"}},
		{args: []string{"extra"}, want: []string{"unexpected arguments: extra"}},
		{args: []string{"--cert-rotation"}, want: []string{"-cert-rotation needs -cert-secret, -cert-dns-name, -webhook-configuration"}},
		{args: []string{"--cert-rotation", "--cert-secret=certs", "--cert-dns-name=a.b.svc", "--webhook-configuration=x"}, want: []string{"-cert-secret", `"certs"`, "NAMESPACE/NAME"}},
		{args: []string{"--cert-rotation", "--cert-secret=ns/certs", "--cert-dns-name=a.b.svc", "--webhook-configuration=x", "--cert-validity=10s"}, want: []string{"-cert-validity", "at least 1m"}},
		{env: [2]string{"FLOWAUTH_LOG_FORMAT", "xml"}, want: []string{"FLOWAUTH_LOG_FORMAT", `"xml"`, "text, json"}},
		{args: []string{"--pprof-bind-address=6060"}, want: []string{"-pprof-bind-address", `"6060"`, "[HOST]:PORT", "or 0"}},
		{args: []string{"--metrics-bind-address=:http"}, want: []string{"-metrics-bind-address", `":http"`}},
		{env: [2]string{"FLOWAUTH_HEALTH_PROBE_BIND_ADDRESS", "localhost"}, want: []string{"-health-probe-bind-address", `"localhost"`}},
		{args: []string{"--secret-field-selector=type"}, want: []string{"-secret-field-selector", `"type"`}},
		{args: []string{"--secret-label-selector=a b"}, want: []string{"-secret-label-selector", `"a b"`}},
		{args: []string{"--skip-containers=istio-proxy,Bad_Name"}, want: []string{"-skip-containers", `"Bad_Name" is not a container name`}},
		{env: [2]string{"FLOWAUTH_CONFIGMAP_LABEL_SELECTOR", "owner!!helm"}, want: []string{"-configmap-label-selector", `"owner!!helm"`}},
		// Zero privilege is explicit, and refuses what would need the API server.
		{args: []string{"--cluster-connection=false"}, want: []string{"-cluster-connection=false", "-namespace-defaults (default true: set it to false)"}},
		{args: []string{"--cluster-connection=false", "--namespace-defaults=false", "--secret-lookup=keys", "--require-allow-list"}, want: []string{"-secret-lookup=keys", "-require-allow-list"}},
	}
	for _, tt := range tests {
		if tt.env[0] != "" {
			t.Setenv(tt.env[0], tt.env[1])
		}
		_, err := parseFlags(tt.args)
		if err == nil {
			t.Errorf("%v %v: no error", tt.args, tt.env)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v %v: error %q lacks %q", tt.args, tt.env, err, w)
			}
		}
		if tt.env[0] != "" {
			t.Setenv(tt.env[0], "")
		}
	}
}

// TestGCPercent: the binary's default applies unless GOGC is set, and GOGC wins when it is.
func TestGCPercent(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	if got := setGCPercent(func(string) (string, bool) { return "", false }); got != "125" {
		t.Errorf("without GOGC: %s", got)
	}
	if now := debug.SetGCPercent(100); now != defaultGCPercent {
		t.Errorf("GC percent in force %d, want %d", now, defaultGCPercent)
	}
	if got := setGCPercent(func(string) (string, bool) { return "off", true }); got != "off" {
		t.Errorf("with GOGC=off: %s", got)
	}
	if now := debug.SetGCPercent(100); now != 100 {
		t.Errorf("GOGC set, yet the binary changed the GC percent to %d", now)
	}
}

// TestMemoryLimit: the binary's soft limit applies without key lookup unless GOMEMLIMIT is set;
// with key lookup (a heap that grows with the cluster) it is that much above the live heap;
// GOMEMLIMIT always wins.
func TestMemoryLimit(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(math.MaxInt64))
	unset := func(string) (string, bool) { return "", false }
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	if got := setMemoryLimit(ctx, unset, "none"); got != "32MiB" {
		t.Errorf("without GOMEMLIMIT: %s", got)
	}
	if now := debug.SetMemoryLimit(math.MaxInt64); now != defaultMemoryLimit {
		t.Errorf("memory limit in force %d, want %d", now, defaultMemoryLimit)
	}
	debug.SetMemoryLimit(math.MaxInt64)
	// The live heap is known only once a collection has ended: before the first one the
	// runtime reports 0 (a fresh test binary may not have collected yet; CI's did not).
	runtime.GC()
	keysCtx, stopFollowing := context.WithCancel(ctx)
	if got := setMemoryLimit(keysCtx, unset, "keys"); !strings.Contains(got, "above the live heap") {
		t.Errorf("with key lookup: %s", got)
	}
	if now := debug.SetMemoryLimit(-1); now <= defaultMemoryLimit || now > defaultMemoryLimit+(256<<20) {
		t.Errorf("with key lookup the limit is %d, want the live heap plus %d", now, defaultMemoryLimit)
	}
	stopFollowing()
	followers.Wait()
	debug.SetMemoryLimit(math.MaxInt64)
	if got := setMemoryLimit(ctx, func(string) (string, bool) { return "64MiB", true }, "none"); got != "64MiB" {
		t.Errorf("with GOMEMLIMIT=64MiB: %s", got)
	}
	if now := debug.SetMemoryLimit(-1); now != math.MaxInt64 {
		t.Errorf("GOMEMLIMIT set, yet the binary changed the limit to %d", now)
	}
}
