package localcluster

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// ServiceAccountKubeconfig writes a kubeconfig that authenticates as the ServiceAccount with a
// token from the TokenRequest API, as a pod of that ServiceAccount would. A webhook run with it
// has exactly the RBAC the chart granted: no more.
func (c *Cluster) ServiceAccountKubeconfig(ctx context.Context, namespace, name string) (string, error) {
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return "", err
	}
	expiry := int64(3600)
	tr, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for serviceaccount %s/%s: %w", namespace, name, err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: c.Config.Host, CertificateAuthorityData: c.Config.CAData}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["sa"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: name, Namespace: namespace}
	cfg.CurrentContext = "sa"
	path := filepath.Join(c.opts.WorkDir, "kubeconfig-"+namespace+"-"+name)
	return path, clientcmd.WriteToFile(*cfg, path)
}

// ProjectSecret stands in for the kubelet's Secret volume, which the local control plane lacks:
// until ctx ends it keeps dir holding the Secret's keys as files, and swaps all of them at once
// when the Secret changes, the way the kubelet does (files are symlinks into ..data, a symlink to
// a fresh folder that is replaced atomically). So certwatcher sees what it sees in a pod.
func (c *Cluster) ProjectSecret(ctx context.Context, namespace, name, dir string) {
	go func() {
		var current map[string][]byte
		for {
			var s corev1.Secret
			if err := c.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &s); err == nil &&
				len(s.Data) > 0 && !maps.EqualFunc(current, s.Data, bytes.Equal) {
				if err := Project(dir, s.Data); err == nil {
					current = s.Data
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
}

// Project writes data into dir as the kubelet projects a Secret volume: a fresh folder of files,
// made current by atomically replacing the ..data symlink the files point through.
func Project(dir string, data map[string][]byte) error {
	version, err := os.MkdirTemp(dir, "..version-")
	if err != nil {
		return err
	}
	for key, value := range data {
		if err := os.WriteFile(filepath.Join(version, key), value, 0o600); err != nil {
			return err
		}
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	tmp := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Base(version), tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		return err
	}
	for key := range data {
		link := filepath.Join(dir, key)
		if _, err := os.Lstat(link); err != nil {
			if err := os.Symlink(filepath.Join("..data", key), link); err != nil {
				return err
			}
		}
	}
	if old != "" {
		_ = os.RemoveAll(filepath.Join(dir, old))
	}
	return nil
}
