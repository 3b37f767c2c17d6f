// Command policyindex measures whether policy mode could tell a missing Secret at apply time
// from an index of Secret names kept as a policy's param (issue 31, item 3), the way the webhook
// tells it from its key cache. A ValidatingAdmissionPolicy refuses a flow-run pod whose Secret is
// not in a ConfigMap of its namespace; a controller would keep that ConfigMap. Here the harness is
// that controller at its best: it adds the name to the ConfigMap itself, synchronously, right
// after creating the Secret and before the pod, as `kubectl create secret` followed by a flow run
// does. It counts the pods the policy refuses although their Secret exists (false "missing"), in
// pairs created back to back, against the webhook's figure for the same pairs (make scale: none,
// since the webhook reads the API server when its cache does not know a Secret).
//
//	go run ./hack/policyindex [-pairs 300]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flowauth/flowauth/test/localcluster"
)

const (
	index = "flowauth-secret-index"
	label = "flowauth.io/index-probe"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "policyindex:", err)
		os.Exit(1)
	}
}

func run() error {
	pairs := flag.Int("pairs", 300, "Secret-then-pod pairs created back to back")
	flag.Parse()
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "flowauth-policyindex-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(work) }()
	ctx := context.Background()
	c, err := localcluster.Start(ctx, localcluster.Options{RepoRoot: root, WorkDir: filepath.Join(work, "cluster"), NoWebhook: true})
	if err != nil {
		return err
	}
	defer func() { _ = c.Stop() }()
	k := c.Client

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "index-probe", Labels: map[string]string{label: "on"}}}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: index, Namespace: ns.Name}, Data: map[string]string{"seed": ""}}
	vap := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "secret-index"},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			ParamKind:     &admissionregistrationv1.ParamKind{APIVersion: "v1", Kind: "ConfigMap"},
			FailurePolicy: ptr.To(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
				},
			}}},
			Validations: []admissionregistrationv1.Validation{{
				Expression:        `object.metadata.annotations['secret'] in params.data`,
				MessageExpression: `'Secret ' + object.metadata.annotations['secret'] + ' is not in the index'`,
			}},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "secret-index"},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName: vap.Name,
			ParamRef: &admissionregistrationv1.ParamRef{Name: index,
				ParameterNotFoundAction: ptr.To(admissionregistrationv1.DenyAction)},
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
			MatchResources: &admissionregistrationv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{label: "on"}}},
		},
	}
	for _, o := range []client.Object{ns, cm, vap, binding} {
		if err := k.Create(ctx, o); err != nil {
			return fmt.Errorf("creating %s: %w", o.GetName(), err)
		}
	}
	pod := func(secret string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "run-", Namespace: ns.Name, Annotations: map[string]string{"secret": secret}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "flow", Image: "flow:1"}}},
		}
	}
	// In force when the seed passes and an unknown name is refused.
	deadline := time.Now().Add(30 * time.Second)
	for {
		errSeed := k.Create(ctx, pod("seed"), client.DryRunAll)
		errNone := k.Create(ctx, pod("none"), client.DryRunAll)
		if errSeed == nil && errNone != nil && strings.Contains(errNone.Error(), "not in the index") {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the policy is not in force after 30 s: %w / %w", errSeed, errNone)
		}
		time.Sleep(200 * time.Millisecond)
	}

	falseMissing, firstLate := 0, ""
	var lags []time.Duration
	start := time.Now()
	for i := range *pairs {
		name := fmt.Sprintf("creds-%d", i)
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns.Name}, StringData: map[string]string{"token": "x"}}
		if err := k.Create(ctx, secret); err != nil {
			return err
		}
		// The controller at its best: the index updated before the pod is sent.
		if err := k.Get(ctx, client.ObjectKeyFromObject(cm), cm); err != nil {
			return err
		}
		cm.Data[name] = ""
		if err := k.Update(ctx, cm); err != nil {
			return err
		}
		written := time.Now()
		err := k.Create(ctx, pod(name))
		if err == nil {
			continue
		}
		if !strings.Contains(err.Error(), "not in the index") {
			return err
		}
		falseMissing++
		if firstLate == "" {
			firstLate = err.Error()
		}
		// How long until the API server's param informer has the name: the index's lag.
		for k.Create(ctx, pod(name), client.DryRunAll) != nil {
			time.Sleep(time.Millisecond)
		}
		lags = append(lags, time.Since(written))
	}
	fmt.Printf("%d Secret-then-pod pairs back to back in %s, the index updated synchronously before each pod:\n", *pairs, time.Since(start).Round(time.Millisecond))
	fmt.Printf("  pods refused although their Secret existed: %d of %d\n", falseMissing, *pairs)
	if len(lags) > 0 {
		var worst, sum time.Duration
		for _, l := range lags {
			worst, sum = max(worst, l), sum+l
		}
		fmt.Printf("  the API server's param cache caught up %s after the index write on average, %s at worst; first refusal: %s\n",
			(sum / time.Duration(len(lags))).Round(100*time.Microsecond), worst.Round(100*time.Microsecond), firstLate)
	}
	return nil
}
