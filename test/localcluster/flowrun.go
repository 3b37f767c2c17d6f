package localcluster

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// ServiceAccountKey is a GCP service-account key file as GCP issues them, with a fresh RSA key:
// google-auth loads it exactly as it loads a real one (and needs no network to do so).
func ServiceAccountKey(project, clientEmail string) ([]byte, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	id := make([]byte, 20)
	_, _ = rand.Read(id)
	return json.Marshal(map[string]string{
		"type": "service_account", "project_id": project, "private_key_id": hex.EncodeToString(id),
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": clientEmail, "client_id": "100000000000000000000",
		"token_uri": "https://oauth2.googleapis.com/token",
	})
}

// ProbeJob reads a flow-run Job from examples/ and makes its first container run the probe
// image's flowauth-probe for names, in place of Prefect: what the example declares is untouched.
func ProbeJob(repoRoot, example, probeImage string, names ...string) (*batchv1.Job, error) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "examples", example))
	if err != nil {
		return nil, err
	}
	var job batchv1.Job
	if err := yaml.UnmarshalStrict(b, &job); err != nil {
		return nil, err
	}
	c := &job.Spec.Template.Spec.Containers[0]
	c.Image, c.Command, c.Args = probeImage, append([]string{"flowauth-probe"}, names...), nil
	return &job, nil
}

// WaitForJobComplete waits until the Job completes and returns its pod. A Job that fails, or
// has not completed within timeout, is an error that carries its pod's description and logs.
func (c *Cluster) WaitForJobComplete(ctx context.Context, namespace, name string, timeout time.Duration) (*corev1.Pod, error) {
	err := waitFor(ctx, timeout, "job "+namespace+"/"+name+" to complete", func() error {
		var job batchv1.Job
		if err := c.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &job); err != nil {
			return err
		}
		for _, cond := range job.Status.Conditions {
			if cond.Status != corev1.ConditionTrue {
				continue
			}
			switch cond.Type {
			case batchv1.JobComplete:
				return nil
			case batchv1.JobFailed:
				return stopWaiting{fmt.Errorf("failed: %s", cond.Message)}
			}
		}
		return errors.New("not complete yet")
	})
	if err != nil {
		describe, _, _ := c.Kubectl(ctx, "-n", namespace, "describe", "pods", "-l", batchv1.JobNameLabel+"="+name)
		logs, _, _ := c.Kubectl(ctx, "-n", namespace, "logs", "job/"+name, "--all-containers")
		return nil, fmt.Errorf("%w\n%s\nlogs:\n%s", err, describe, logs)
	}
	var pods corev1.PodList
	if err := c.Client.List(ctx, &pods, client.InNamespace(namespace), client.MatchingLabels{batchv1.JobNameLabel: name}); err != nil {
		return nil, err
	}
	if len(pods.Items) == 0 {
		return nil, fmt.Errorf("job %s/%s completed with no pod", namespace, name)
	}
	return &pods.Items[0], nil
}
