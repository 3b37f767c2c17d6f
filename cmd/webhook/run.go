package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/http/pprof"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/prometheus/client_golang/prometheus"

	fwadmission "github.com/flowauth/flowauth/pkg/admission"
	"github.com/flowauth/flowauth/pkg/mutate"
	"github.com/flowauth/flowauth/pkg/secretkeys"
	"github.com/flowauth/flowauth/pkg/secretmap"
)

// liveReadTimeout bounds one read of a Secret the key cache lacks: well inside the chart's
// webhook timeout (5 s by default), so a slow API server costs a warning, not the admission.
const liveReadTimeout = 2 * time.Second

// secretMapPoll backs up the file watch on file systems that send no events.
const secretMapPoll = 10 * time.Second

var secretMapReloads = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "flowauth_secret_map_reloads_total",
	Help: "Reloads of the --secret-map file by result (success, or failure: the old map stays in force).",
}, []string{"result"})

// secretMapInForce is what FlowauthSecretMapReloadFailing reads: a counter of failures cannot say
// whether the file is still bad (a bad file is read once, and the count's increase ages out of
// any window while the file stays bad), so this gauge holds the state until the file is mended.
var secretMapInForce = prometheus.NewGauge(prometheus.GaugeOpts{
	Name: "flowauth_secret_map_last_reload_successful",
	Help: "1 when the --secret-map file as it is now is the map in force, 0 while it is rejected (the previous map stays in force).",
})

var servingCertExpiry = newCertExpiry()

func run(ctx context.Context, c config) error {
	log := ctrl.Log.WithName("setup")
	store, err := secretmap.NewStore(c.secretMap)
	if err != nil {
		return fmt.Errorf("--secret-map: %w", err)
	}
	reloads := fwadmission.MustRegisterOnce(ctrlmetrics.Registry, secretMapReloads)
	inForce := fwadmission.MustRegisterOnce(ctrlmetrics.Registry, secretMapInForce)
	inForce.Set(1) // NewStore above refuses to start with a bad file
	// Both results exist from the start, at 0: a dashboard panel or rule reading them has data
	// before the first reload.
	reloads.WithLabelValues("success")
	reloads.WithLabelValues("failure")
	buildInfo := fwadmission.MustRegisterOnce(ctrlmetrics.Registry, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "flowauth_build_info", Help: "1, labelled with the release this binary was built as.",
	}, []string{"version"}))
	buildInfo.WithLabelValues(version).Set(1)
	fwadmission.MustRegisterOnce(ctrlmetrics.Registry, servingCertExpiry).setDir(c.certDir)
	handler := &fwadmission.PodMutator{
		Secrets: store, Metrics: fwadmission.NewMetrics(ctrlmetrics.Registry), Missing: mutate.MissingPolicy(c.missingSecret), SkipContainers: c.skipContainers,
		IgnoreNamespaceDefaults: !c.namespaceDefaults, RequireAllowList: c.requireAllowList, KeyNamespaces: c.secretLookupNamespaces,
		Confirmations: &fwadmission.FairLimiter{PerNamespace: fwadmission.ConfirmationsPerNamespace, Burst: fwadmission.ConfirmationsBurst},
	}
	if c.namespaceSelector != "" {
		handler.Selector, _ = labels.Parse(c.namespaceSelector) // checked by parseFlags
	}
	templates := &fwadmission.TemplateValidator{Pods: handler}

	tlsOpts := tlsOptions(c)
	if c.clientCAFile != "" {
		opt, err := clientAuth(c.clientCAFile, c.clientNames)
		if err != nil {
			return err
		}
		tlsOpts = append(tlsOpts, opt)
	}
	server := webhook.NewServer(webhook.Options{Port: c.port, CertDir: c.certDir, TLSOpts: tlsOpts})
	watchSecretMap := func(ctx context.Context) error {
		return store.Watch(ctx, secretMapPoll, func(changed bool, err error) {
			if err != nil {
				reloads.WithLabelValues("failure").Inc()
				inForce.Set(0)
				ctrl.Log.WithName("secret-map").Error(err, "secret map rejected; the previous map stays in force", "path", c.secretMap)
				return
			}
			reloads.WithLabelValues("success").Inc()
			inForce.Set(1)
			ctrl.Log.WithName("secret-map").Info("secret map reloaded", "path", c.secretMap, "names", len(store.Map().Names()))
		})
	}

	keyLookup := c.secretLookup == "keys"
	if !c.clusterConnection {
		// Zero privilege, chosen explicitly (--cluster-connection=false, the chart's
		// clusterConnection: false): no API access at all, so no Namespace is read and no Event
		// recorded; warnings reach clients in the admission response only. A namespace
		// administrator's allow-list is then not enforced, and that must never be silent.
		server.Register(fwadmission.PodPath, fwadmission.NewPodWebhook(handler))
		server.Register(fwadmission.JobPath, fwadmission.NewTemplateWebhook(templates))
		log.Info("starting without a cluster connection (--cluster-connection=false): namespace allow-lists (" + mutate.AnnotationAllowedSecrets + ", " + mutate.AllowedSecretsForPrefix + "*) are NOT read, so NOT enforced; any Secret of a pod's namespace can be asked for by its annotations")
		return runStandalone(ctx, c, server, watchSecretMap)
	}

	cfg, err := restConfig(c.kubeconfig)
	if err != nil {
		return err
	}
	// Reads on the admission path (a Secret the key cache lacks, a namespace it has not seen)
	// must not queue behind client-go's default 5 requests a second during a burst of new runs.
	cfg.QPS, cfg.Burst = fwadmission.ClientQPS, fwadmission.ClientBurst
	// The manager's cache holds Namespaces only (metadata); Secret and ConfigMap key names are
	// watched by pkg/secretkeys, which keeps one small copy of each and no values.
	cacheOptions := cache.Options{DefaultTransform: cache.TransformStripManagedFields()}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Metrics:                metricsserver.Options{BindAddress: c.metricsBindAddress},
		HealthProbeBindAddress: c.healthProbeBindAddress,
		PprofBindAddress:       c.pprofBindAddress,
		WebhookServer:          server,
		Cache:                  cacheOptions,
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	{
		// Namespaces are read whenever the webhook has a cluster connection: whether a request's
		// namespace is served, its defaults and its owner's allow-list.
		namespaces, err := fwadmission.WatchNamespaces(ctx, mgr.GetCache())
		if err != nil {
			return err
		}
		namespaces.Live = mgr.GetAPIReader()
		handler.Namespaces = namespaces
		if err := mgr.AddReadyzCheck("namespace-cache", cacheSynced(mgr.GetCache())); err != nil {
			return err
		}
	}
	if keyLookup {
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return err
		}
		index, err := secretkeys.Watch(ctx, cs, c.keyWatch)
		if err != nil {
			return err
		}
		handler.Keys = index
		handler.Live = secretkeys.NewLive(cs, liveReadTimeout)
		ctrlmetrics.Registry.MustRegister(index.Collector())
		// Before the key names are known every declared Secret would be read live.
		if err := mgr.AddReadyzCheck("key-cache", func(*http.Request) error {
			if !index.Synced() {
				return errors.New("key cache of Secrets and ConfigMaps not synced")
			}
			return nil
		}); err != nil {
			return err
		}
	}
	handler.Events = fwadmission.NewPacedEvents(mgr.GetEventRecorder("flowauth-webhook"), handler.Metrics)
	server.Register(fwadmission.PodPath, fwadmission.NewPodWebhook(handler))
	server.Register(fwadmission.JobPath, fwadmission.NewTemplateWebhook(templates))
	if c.certs.rotation {
		// The server reads its certificate when it starts, so it starts once cert-controller has
		// written the Secret, the kubelet has mounted it and the CA is in the webhook configuration.
		ready, err := addCertRotator(mgr, c.certDir, c.certs)
		if err != nil {
			return err
		}
		if err := mgr.Add(startAfter{ready: ready, Runnable: server}); err != nil {
			return err
		}
	} else {
		// Registering through the manager's getter is what adds the server to its runnables.
		mgr.GetWebhookServer()
	}
	if err := mgr.Add(manager.RunnableFunc(watchSecretMap)); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("webhook", server.StartedChecker()); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("shutdown", notDraining); err != nil {
		return err
	}
	log.Info("starting", "port", c.port, "namespaceDefaults", c.namespaceDefaults, "missingSecret", c.missingSecret, "certRotation", c.certs.rotation, "secretLookup", c.secretLookup, "secretMap", c.secretMap)
	return mgr.Start(ctx)
}

// addCertRotator has cert-controller keep a CA and serving certificate in the Secret and the CA in
// the webhook configuration. Every replica runs it (no leader election): they share the Secret, so
// all serve certificates of one CA, and an update conflict just makes a replica read the winner's.
func addCertRotator(mgr manager.Manager, certDir string, cc certConfig) (<-chan struct{}, error) {
	namespace, name, _ := strings.Cut(cc.secret, "/")
	ready := make(chan struct{})
	err := rotator.AddRotator(mgr, &rotator.CertRotator{
		SecretKey:      types.NamespacedName{Namespace: namespace, Name: name},
		CertDir:        certDir,
		CAName:         "flowauth-ca",
		CAOrganization: "flowauth",
		DNSName:        cc.dnsName,
		IsReady:        ready,
		// One name for both configurations: pods are mutated, Job and CronJob templates validated.
		Webhooks: []rotator.WebhookInfo{
			{Name: cc.webhookConfiguration, Type: rotator.Mutating},
			{Name: cc.webhookConfiguration, Type: rotator.Validating},
		},
		FieldOwner:             "flowauth",
		ServerCertDuration:     cc.validity,
		LookaheadInterval:      cc.validity / 4,
		RotationCheckFrequency: min(12*time.Hour, cc.validity/8),
		EnableReadinessCheck:   true,
	})
	if err != nil {
		return nil, fmt.Errorf("setting up certificate rotation: %w", err)
	}
	return ready, nil
}

// startAfter starts a runnable once ready is closed. It never needs leader election: every
// replica serves.
type startAfter struct {
	ready <-chan struct{}
	manager.Runnable
}

func (s startAfter) Start(ctx context.Context) error {
	select {
	case <-s.ready:
		ctrl.Log.WithName("setup").Info("serving certificate in place; starting the webhook server")
		return s.Runnable.Start(ctx)
	case <-ctx.Done():
		return nil
	}
}

func (startAfter) NeedLeaderElection() bool { return false }

// runStandalone serves the webhook, metrics and probes with no manager, so no kubeconfig or
// in-cluster credentials are needed.
func runStandalone(ctx context.Context, c config, server webhook.Server, watchSecretMap func(context.Context) error) error {
	metrics, err := metricsserver.NewServer(metricsserver.Options{BindAddress: c.metricsBindAddress}, nil, nil)
	if err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return server.Start(ctx) })
	g.Go(func() error { return watchSecretMap(ctx) })
	if metrics != nil {
		g.Go(func() error { return metrics.Start(ctx) })
	}
	if c.healthProbeBindAddress != "0" {
		mux := http.NewServeMux()
		mux.Handle("/healthz", http.StripPrefix("/healthz", &healthz.Handler{Checks: map[string]healthz.Checker{"ping": healthz.Ping}}))
		mux.Handle("/readyz", http.StripPrefix("/readyz", &healthz.Handler{Checks: map[string]healthz.Checker{"webhook": server.StartedChecker(), "shutdown": notDraining}}))
		serve(ctx, g, c.healthProbeBindAddress, mux)
	}
	if c.pprofBindAddress != "0" {
		// The handlers the manager serves at its PprofBindAddress, for the same flag without one.
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		serve(ctx, g, c.pprofBindAddress, mux)
	}
	return g.Wait()
}

// serve runs a plain HTTP server at addr in g until ctx ends, then shuts it down.
func serve(ctx context.Context, g *errgroup.Group, addr string, h http.Handler) {
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	g.Go(func() error {
		if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(shutdown)
	})
}

// tlsOptions: TLS 1.2 at least, and HTTP/1.1 only unless --enable-http2 (DESIGN.md §4).
func tlsOptions(c config) []func(*tls.Config) {
	return []func(*tls.Config){func(t *tls.Config) {
		t.MinVersion = tls.VersionTLS12
		if !c.enableHTTP2 {
			t.NextProtos = []string{"http/1.1"}
		}
	}}
}

// clientAuth makes the TLS server require a client certificate issued by the CA in caFile
// (crypto/tls verifies the chain), and, with names, one that carries one of them as its common
// name or a DNS name: so only the API server, configured with that certificate for webhooks,
// can send reviews.
func clientAuth(caFile string, names []string) (func(*tls.Config), error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("--client-ca-file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--client-ca-file %s: no PEM certificate in it", caFile)
	}
	return func(t *tls.Config) {
		t.ClientCAs, t.ClientAuth = pool, tls.RequireAndVerifyClientCert
		if len(names) == 0 {
			return
		}
		t.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no client certificate")
			}
			leaf := cs.PeerCertificates[0]
			if slices.Contains(names, leaf.Subject.CommonName) || slices.ContainsFunc(leaf.DNSNames, func(n string) bool { return slices.Contains(names, n) }) {
				return nil
			}
			return fmt.Errorf("client certificate %q is not one of --client-names", leaf.Subject.CommonName)
		}
	}, nil
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("--kubeconfig %s: %w", kubeconfig, err)
		}
		return cfg, nil
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("no --kubeconfig and no in-cluster config (%w); pass --kubeconfig, or run with --cluster-connection=false --namespace-defaults=false to need no cluster at all (namespace allow-lists are then not enforced)", err)
	}
	return cfg, nil
}

// cacheSynced is ready once the namespace informer has synced: before that, namespace defaults
// would be missed.
func cacheSynced(c cache.Cache) healthz.Checker {
	return func(req *http.Request) error {
		ctx, cancel := context.WithTimeout(req.Context(), time.Second)
		defer cancel()
		if !c.WaitForCacheSync(ctx) {
			return errors.New("namespace cache not synced")
		}
		return nil
	}
}
