package localcluster

import (
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
)

// apiServerPKI writes into certDir the files envtest would otherwise make itself (apiserver.crt
// and .key, sa-signer.crt and .key), and the API server's client certificate for the kubelet
// (kubelet-client.crt and .key), with one difference: the serving certificate also names the
// `kubernetes` Service's ClusterIP and DNS names, which pods on the node dial. It returns the CA's
// PEM, which clients (envtest's users, the kube-root-ca.crt ConfigMap) trust.
func apiServerPKI(certDir string, ips []net.IP, dnsNames []string) ([]byte, error) {
	ca, err := NewCA("flowauth-localcluster-ca")
	if err != nil {
		return nil, err
	}
	servingCrt, servingKey, err := ca.Issue("kube-apiserver", ips, dnsNames...)
	if err != nil {
		return nil, err
	}
	// The ServiceAccount token signer: a key and a certificate of its public half.
	saCrt, saKey, err := ca.IssueClient("service-account-signer")
	if err != nil {
		return nil, err
	}
	// The API server's client certificate towards the kubelet, the only client the kubelet
	// accepts (it trusts this CA and nothing else).
	clientCrt, clientKey, err := ca.IssueClient("kube-apiserver-kubelet-client", "system:masters")
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{
		"apiserver.crt": append(servingCrt, ca.PEM...), "apiserver.key": servingKey,
		"sa-signer.crt": saCrt, "sa-signer.key": saKey,
		"kubelet-client.crt": clientCrt, "kubelet-client.key": clientKey,
		"ca.crt": ca.PEM,
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(certDir, name), data, 0o600); err != nil {
			return nil, err
		}
	}
	return ca.PEM, nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
