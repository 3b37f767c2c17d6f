package localcluster

import (
	"fmt"
	"os"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
)

// CheckServerVersion makes sure a suite of make test-versions talks to the API server the
// matrix meant (FLOWAUTH_KUBERNETES_VERSION, e.g. v1.30.14), not to whatever bin/k8s holds:
// a matrix that silently ran the newest release everywhere would prove nothing. Without the
// variable it checks nothing.
func CheckServerVersion(cfg *rest.Config) error {
	want := os.Getenv("FLOWAUTH_KUBERNETES_VERSION")
	if want == "" {
		return nil
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	v, err := dc.ServerVersion()
	if err != nil {
		return fmt.Errorf("asking the API server its version: %w", err)
	}
	if v.GitVersion != want {
		return fmt.Errorf("the API server is %s, the matrix asked for %s (KUBEBUILDER_ASSETS=%s)", v.GitVersion, want, os.Getenv("KUBEBUILDER_ASSETS"))
	}
	return nil
}
