package localcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// The nodes' network lives only on this machine: a bridge a node, pod addresses from a range
// reserved for benchmarks (RFC 2544), 198.18.N.0/24 for node N, Service addresses from the range
// beside it, no default route in pods and no NAT to anything outside. This machine routes between
// the bridges, as a cloud's network routes between nodes.
const (
	// NodeName is the first node's name: the only one of a one-node cluster.
	NodeName = "flowauth-node"
	// PodCIDR holds every node's pod range.
	PodCIDR     = "198.18.0.0/16"
	gatewayIP   = "198.18.0.1" // the first node's bridge address: the API server listens here for pods
	serviceCIDR = "198.19.0.0/24"
	// kubernetesServiceIP is the first address of serviceCIDR, the `kubernetes` Service's.
	kubernetesServiceIP = "198.19.0.1"
	// MaxNodes bounds Options.Nodes: each node is a kubelet and a containerd on this machine.
	MaxNodes = 4
)

// member is one node of the cluster: its kubelet and containerd, its state, bridge and pod range.
type member struct {
	name    string
	index   int
	dir     string // its own state: WorkDir/node/NAME
	bridge  string
	cidr    string // 198.18.INDEX.0/24
	gateway string // 198.18.INDEX.1: the bridge's address, the node's InternalIP
	// cgroupRoot is where the kubelet puts its pods' cgroups: "/" for the first node, a folder
	// of its own for the others, so that no kubelet takes another's pods for its orphans.
	cgroupRoot string
	socket     string // containerd's CRI endpoint
	kubelet    *exec.Cmd
	kubeletCmd []string // its command line, to start it again after LoseNode
}

func newMember(dir string, i int) *member {
	m := &member{index: i, name: NodeName, bridge: "flowauth" + strconv.Itoa(i), cidr: fmt.Sprintf("198.18.%d.0/24", i),
		gateway: fmt.Sprintf("198.18.%d.1", i), cgroupRoot: "/"}
	if i > 0 {
		m.name = fmt.Sprintf("%s-%d", NodeName, i+1)
		m.cgroupRoot = "/" + m.name
	}
	m.dir = filepath.Join(dir, m.name)
	m.socket = filepath.Join(m.dir, "containerd", "containerd.sock")
	return m
}

// log is the name of this node's log file for component.
func (m *member) log(component string) string {
	if m.index == 0 {
		return component
	}
	return component + "-" + m.name
}

// ErrNotRoot says why a node cannot run: kubelet, containerd and runc need root.
var ErrNotRoot = errors.New("the local node needs root (kubelet, containerd and runc create namespaces, mounts, cgroups and a bridge)")

// nodeBinaries are what hack/tools.sh node builds into bin/node.
var nodeBinaries = []string{"kubelet", "kube-scheduler", "kube-proxy", "containerd", "containerd-shim-runc-v2", "crictl", "registry", "cni/bridge", "cni/host-local", "cni/loopback"}

type node struct {
	bin      string // bin/node
	dir      string // all of the nodes' state: WorkDir/node
	registry string
	members  []*member
	rec      *record
	logs     map[string]*os.File
}

// startWithNode starts a control plane that pods can reach, a registry with flowauth's images,
// and a node (containerd, kubelet, kube-proxy, kube-scheduler) that runs them.
func startWithNode(ctx context.Context, o Options, assets string) (*Cluster, error) {
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	nodeBin := filepath.Join(o.RepoRoot, "bin", "node")
	for _, b := range nodeBinaries {
		if _, err := os.Stat(filepath.Join(nodeBin, b)); err != nil {
			return nil, fmt.Errorf("%s not found in %s: run `hack/tools.sh node` (make test-node and make cluster do)", b, nodeBin)
		}
	}
	if _, err := exec.LookPath("runc"); err != nil {
		return nil, fmt.Errorf("runc not found: run `hack/tools.sh node`, which installs it from Debian: %w", err)
	}
	dir := filepath.Join(o.WorkDir, "node")
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o750); err != nil {
		return nil, err
	}
	rec, err := claim(dir, nodeBin)
	if err != nil {
		return nil, err
	}
	nodes := max(o.Nodes, 1)
	if nodes > MaxNodes {
		return nil, fmt.Errorf("%d nodes asked for: at most %d run on one machine", nodes, MaxNodes)
	}
	c := &Cluster{opts: o, assets: assets, AllWebhookLogs: &SyncBuffer{}}
	c.node = &node{bin: nodeBin, dir: dir, rec: rec, logs: map[string]*os.File{}}
	for i := range nodes {
		c.node.members = append(c.node.members, newMember(dir, i))
	}
	if err := c.startNode(ctx); err != nil {
		_ = c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) startNode(ctx context.Context) error {
	n := c.node
	for _, m := range n.members {
		if err := createBridge(m); err != nil {
			return err
		}
		if err := createCgroupRoot(m.cgroupRoot); err != nil {
			return err
		}
	}
	var err error
	if n.registry, err = c.startRegistry(ctx, filepath.Join(n.bin, "registry"), n.dir); err != nil {
		return err
	}
	built := make(chan error, 1)
	go func() {
		var err error
		c.Images, err = buildImages(ctx, c.opts.RepoRoot, n.dir, n.registry, c.opts.WebhookPlatforms)
		built <- err
	}()

	certDir := filepath.Join(n.dir, "pki")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return err
	}
	caPEM, err := apiServerPKI(certDir,
		[]net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(gatewayIP), net.ParseIP(kubernetesServiceIP)},
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"})
	if err != nil {
		return err
	}
	port, err := freePortOn(gatewayIP)
	if err != nil {
		return err
	}
	api := &envtest.APIServer{CertDir: certDir}
	//nolint:staticcheck // spelled out: these are the secure-serving address, port and CA
	api.SecureServing.Address, api.SecureServing.Port, api.SecureServing.CA = gatewayIP, strconv.Itoa(port), caPEM
	args := api.Configure()
	args.Set("advertise-address", gatewayIP)
	args.Set("service-cluster-ip-range", serviceCIDR)
	// A real cluster's admission: ServiceAccount on (envtest turns it off), so pods get their
	// token and the chart's RBAC is what the webhook has.
	args.Set("disable-admission-plugins", "")
	// Webhook calls go to the Service's endpoint (the pod's address on the bridge) rather than
	// its ClusterIP, which only kube-proxy's rules in the host's PREROUTING chain could reach.
	args.Set("enable-aggregator-routing", "true")
	// The kubelet (logs, exec) is reached at its InternalIP with a client certificate of our CA.
	args.Set("kubelet-preferred-address-types", "InternalIP")
	args.Set("kubelet-client-certificate", filepath.Join(certDir, "kubelet-client.crt"))
	args.Set("kubelet-client-key", filepath.Join(certDir, "kubelet-client.key"))
	// etcd's data under the node's folder too, so that a crashed run's etcd is found and ended.
	etcd := &envtest.Etcd{DataDir: filepath.Join(n.dir, "etcd")}
	c.env = &envtest.Environment{BinaryAssetsDirectory: c.assets, ControlPlane: envtest.ControlPlane{APIServer: api, Etcd: etcd}}
	if c.Config, err = c.env.Start(); err != nil {
		return fmt.Errorf("starting etcd and kube-apiserver on %s: %w", gatewayIP, err)
	}
	if err := c.writeAdminKubeconfig(); err != nil {
		return err
	}
	kcm := exec.CommandContext(ctx, filepath.Join(c.assets, "kube-controller-manager"),
		"--kubeconfig="+c.Kubeconfig, "--leader-elect=false", "--secure-port=0", "--use-service-account-credentials=false",
		"--controllers=job-controller,namespace-controller,serviceaccount-controller,root-ca-certificate-publisher-controller,deployment-controller,replicaset-controller,statefulset-controller,endpoints-controller,endpointslice-controller,garbage-collector-controller,disruption-controller,pod-garbage-collector-controller,ttl-after-finished-controller,node-lifecycle-controller,taint-eviction-controller",
		"--root-ca-file="+filepath.Join(certDir, "ca.crt"), "--cluster-cidr="+PodCIDR)
	kcm.Stdout, kcm.Stderr = c.nodeLog("kube-controller-manager"), c.nodeLog("kube-controller-manager")
	if err := c.runNode(kcm); err != nil {
		return fmt.Errorf("starting kube-controller-manager: %w", err)
	}
	if err := <-built; err != nil {
		return fmt.Errorf("building the images: %w", err)
	}
	for _, m := range n.members {
		if err := c.startContainerd(ctx, m); err != nil {
			return err
		}
		if err := c.startKubelet(ctx, m); err != nil {
			return err
		}
	}
	if err := c.startKubeProxy(ctx); err != nil {
		return err
	}
	sched := exec.CommandContext(ctx, filepath.Join(n.bin, "kube-scheduler"), "--kubeconfig="+c.Kubeconfig,
		"--leader-elect=false", "--secure-port=0")
	sched.Stdout, sched.Stderr = c.nodeLog("kube-scheduler"), c.nodeLog("kube-scheduler")
	if err := c.runNode(sched); err != nil {
		return fmt.Errorf("starting kube-scheduler: %w", err)
	}
	for _, m := range n.members {
		if err := c.waitNodeReady(ctx, m.name); err != nil {
			return err
		}
	}
	return nil
}

// writeAdminKubeconfig writes WorkDir/kubeconfig for a system:masters user of the control plane
// and makes the cluster's client.
func (c *Cluster) writeAdminKubeconfig() error {
	admin, err := c.env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		return err
	}
	c.Kubeconfig = filepath.Join(c.opts.WorkDir, "kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, kubeconfig, 0o600); err != nil {
		return err
	}
	c.Client, err = client.New(c.Config, client.Options{})
	return err
}

func (c *Cluster) startContainerd(ctx context.Context, m *member) error {
	n := c.node
	cd := filepath.Join(m.dir, "containerd")
	netd := filepath.Join(m.dir, "cni", "net.d")
	for _, d := range []string{cd, netd, filepath.Join(cd, "certs.d")} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return err
		}
	}
	// The bridge plugin joins pods to the node's bridge made above. Pods get routes to the Service
	// range and to the other nodes' pods through the gateway and no default route, and nothing is
	// masqueraded: a pod can reach this machine and other pods, never beyond.
	conflist := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "flowauth", "plugins": [{
  "type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false, "hairpinMode": true,
  "ipam": {"type": "host-local", "dataDir": %q,
           "ranges": [[{"subnet": %q, "gateway": %q}]], "routes": [{"dst": %q}, {"dst": %q}]}}]}
`, m.bridge, filepath.Join(m.dir, "cni", "ipam"), m.cidr, m.gateway, serviceCIDR, PodCIDR)
	if err := os.WriteFile(filepath.Join(netd, "10-flowauth.conflist"), []byte(conflist), 0o600); err != nil {
		return err
	}
	runc, _ := exec.LookPath("runc")
	config := fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.blockfile", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing", "io.containerd.nri.v1.nri"]

[grpc]
  address = %[3]q

[ttrpc]
  address = "%[3]s.ttrpc"

[plugins.'io.containerd.internal.v1.opt']
  path = %[4]q

[plugins.'io.containerd.cri.v1.images']
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = %[5]q
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = %[6]q

[plugins.'io.containerd.cri.v1.runtime']
  # Processes here may not lower their oom_score_adj; without this runc fails to start a sandbox.
  restrict_oom_score_adj = true
  # Pod network namespaces under the state folder, so that teardown finds every one.
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = [%[7]q]
    conf_dir = %[8]q
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      BinaryName = %[9]q
      Root = %[10]q
      SystemdCgroup = false
`, filepath.Join(cd, "root"), filepath.Join(cd, "state"), m.socket, filepath.Join(cd, "opt"),
		c.Images.Pause, filepath.Join(cd, "certs.d"), filepath.Join(n.bin, "cni"), netd, runc, filepath.Join(cd, "runc"))
	// The registry speaks plain HTTP on loopback, as a cluster's local mirror would.
	hostsDir := filepath.Join(cd, "certs.d", n.registry)
	if err := os.MkdirAll(hostsDir, 0o750); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(hostsDir, "hosts.toml"), fmt.Appendf(nil, "server = \"http://%s\"\n\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", n.registry, n.registry), 0o600); err != nil {
		return err
	}
	configPath := filepath.Join(cd, "config.toml")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(n.bin, "containerd"), "--config", configPath)
	// The runc shim is found on containerd's PATH.
	cmd.Env = append(os.Environ(), "PATH="+n.bin+":"+os.Getenv("PATH"))
	cmd.Stdout, cmd.Stderr = c.nodeLog(m.log("containerd")), c.nodeLog(m.log("containerd"))
	if err := c.runNode(cmd); err != nil {
		return fmt.Errorf("starting containerd of %s: %w", m.name, err)
	}
	return waitFor(ctx, 30*time.Second, "containerd's CRI on "+m.name, func() error {
		return c.crictl(ctx, m, "info")
	})
}

func (c *Cluster) startKubelet(ctx context.Context, m *member) error {
	n := c.node
	kd := filepath.Join(m.dir, "kubelet")
	if err := os.MkdirAll(kd, 0o750); err != nil {
		return err
	}
	kubeletPort, err := freePortOn(m.gateway)
	if err != nil {
		return err
	}
	healthPort, err := freePortOn("127.0.0.1")
	if err != nil {
		return err
	}
	// Pods resolve names through a resolver that does not exist: nothing they look up can leave.
	resolv := filepath.Join(n.dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 127.0.0.1\n"), 0o600); err != nil {
		return err
	}
	config := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine's cgroups are v1 (hybrid): kubelet 1.35+ refuses them unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: %s
containerRuntimeEndpoint: unix://%s
# The node's address is the bridge's: a kubelet may not take a loopback address as its node IP.
# Its one client is the API server (logs, exec), with a certificate of the local CA.
address: %s
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %d
authentication: {anonymous: {enabled: false}, webhook: {enabled: false}, x509: {clientCAFile: %s}}
authorization: {mode: AlwaysAllow}
podLogsDir: %s
resolvConf: %s
failSwapOn: false
registerNode: true
# Nothing is garbage-collected or evicted for a test's sake: the disk is shared.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%%", imagefs.available: "1%%", nodefs.inodesFree: "1%%"}
serializeImagePulls: false
syncFrequency: 10s
maxPods: 110
`, m.cgroupRoot, m.socket, m.gateway, kubeletPort, healthPort, filepath.Join(n.dir, "pki", "ca.crt"), filepath.Join(m.dir, "pod-logs"), resolv)
	configPath := filepath.Join(kd, "config.yaml")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		return err
	}
	m.kubeletCmd = []string{filepath.Join(n.bin, "kubelet"), "--config=" + configPath, "--kubeconfig=" + c.Kubeconfig,
		"--root-dir=" + filepath.Join(kd, "root"), "--cert-dir=" + filepath.Join(kd, "pki"),
		"--node-ip=" + m.gateway, "--hostname-override=" + m.name, "--v=1"}
	return c.runKubelet(ctx, m)
}

func (c *Cluster) runKubelet(ctx context.Context, m *member) error {
	cmd := exec.CommandContext(ctx, m.kubeletCmd[0], m.kubeletCmd[1:]...)
	cmd.Env = append(os.Environ(), "PATH="+c.node.bin+":"+os.Getenv("PATH"))
	cmd.Stdout, cmd.Stderr = c.nodeLog(m.log("kubelet")), c.nodeLog(m.log("kubelet"))
	if err := c.runNode(cmd); err != nil {
		return fmt.Errorf("starting the kubelet of %s: %w", m.name, err)
	}
	m.kubelet = cmd
	return nil
}

func (c *Cluster) startKubeProxy(ctx context.Context) error {
	n := c.node
	health, err := FreeAddr()
	if err != nil {
		return err
	}
	metrics, err := FreeAddr()
	if err != nil {
		return err
	}
	config := fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: %s}
hostnameOverride: %s
clusterCIDR: %s
bindAddress: 127.0.0.1
healthzBindAddress: %s
metricsBindAddress: %s
# Leave the machine's conntrack settings as they are.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
# No NodePort on loopback (that would set route_localnet), only on the bridge.
iptables: {localhostNodePorts: false}
nodePortAddresses: [%s/32]
`, c.Kubeconfig, NodeName, PodCIDR, health, metrics, gatewayIP)
	configPath := filepath.Join(n.dir, "kube-proxy.yaml")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		return err
	}
	// One kube-proxy serves every node: they share this machine's network stack and iptables.
	cmd := exec.CommandContext(ctx, filepath.Join(n.bin, "kube-proxy"), "--config="+configPath)
	cmd.Stdout, cmd.Stderr = c.nodeLog("kube-proxy"), c.nodeLog("kube-proxy")
	if err := c.runNode(cmd); err != nil {
		return fmt.Errorf("starting kube-proxy: %w", err)
	}
	return nil
}

func (c *Cluster) waitNodeReady(ctx context.Context, name string) error {
	return waitFor(ctx, 2*time.Minute, "node "+name+" to be Ready", func() error {
		var node corev1.Node
		if err := c.Client.Get(ctx, types.NamespacedName{Name: name}, &node); err != nil {
			return err
		}
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				if cond.Status == corev1.ConditionTrue {
					return nil
				}
				return fmt.Errorf("condition Ready is %s: %s", cond.Status, cond.Message)
			}
		}
		return errors.New("no Ready condition yet")
	})
}

// runNode starts a node process and records its id, so that a later start can end it if this
// harness dies without tearing down.
func (c *Cluster) runNode(cmd *exec.Cmd) error {
	if err := c.run(cmd); err != nil {
		return err
	}
	return c.node.rec.addPID(cmd.Process.Pid)
}

func (c *Cluster) crictl(ctx context.Context, m *member, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(c.node.bin, "crictl"), append([]string{"--runtime-endpoint", "unix://" + m.socket, "--timeout", "20s"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("crictl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// nodeLog is the log file of one node component, in the node's folder.
func (c *Cluster) nodeLog(name string) *os.File {
	if f, ok := c.node.logs[name]; ok {
		return f
	}
	f, err := os.OpenFile(filepath.Join(c.node.dir, "logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		f, _ = os.Open(os.DevNull)
	}
	c.node.logs[name] = f
	return f
}

// NodeLogs are the paths of the node's component logs (kubelet, containerd, ...) and of every
// container log the kubelet wrote, for scans of what reached them.
func (c *Cluster) NodeLogs() ([]string, error) {
	if c.node == nil {
		return nil, nil
	}
	var paths []string
	roots := []string{filepath.Join(c.node.dir, "logs")}
	for _, m := range c.node.members {
		roots = append(roots, filepath.Join(m.dir, "pod-logs"))
	}
	for _, root := range roots {
		err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				paths = append(paths, path)
			}
			return err
		})
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	return paths, nil
}

// stopNode stops the kubelet (so nothing restarts) and removes the pods while containerd still
// runs; Stop then ends the other processes and the record's cleanup removes what is left.
func (c *Cluster) stopNode() {
	for _, m := range c.node.members {
		if m.kubelet != nil {
			_ = stop(m.kubelet)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, m := range c.node.members {
		if _, err := os.Stat(m.socket); err == nil {
			_ = c.crictl(ctx, m, "rmp", "--force", "--all")
		}
	}
}

// bridgePrefix names every node's bridge (flowauth0, flowauth1, ...), for cleanup.
const bridgePrefix = "flowauth"

func createBridge(m *member) error {
	_ = exec.CommandContext(context.Background(), "ip", "link", "del", m.bridge).Run() // a leftover whose record was lost
	for _, args := range [][]string{
		{"link", "add", m.bridge, "type", "bridge"},
		{"addr", "add", m.gateway + "/24", "dev", m.bridge},
		{"link", "set", m.bridge, "up"},
	} {
		if out, err := exec.CommandContext(context.Background(), "ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// createCgroupRoot makes a node's cgroup folder in every hierarchy: the kubelet refuses a
// cgroupRoot that does not exist. "/" is there already.
func createCgroupRoot(root string) error {
	if root == "/" {
		return nil
	}
	for _, h := range cgroupRoots() {
		if err := os.MkdirAll(filepath.Join(h, root), 0o750); err != nil {
			return fmt.Errorf("creating cgroup %s: %w", filepath.Join(h, root), err)
		}
	}
	return nil
}

func freePortOn(host string) (int, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(context.Background(), "tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Helm runs bin/helm against the cluster and returns what it printed.
func (c *Cluster) Helm(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.opts.RepoRoot, "bin", "helm"), append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	cmd.Dir = c.opts.RepoRoot
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// FlowauthNamespace is where InstallFlowauth installs the chart, as the README does.
const FlowauthNamespace = "flowauth-system"

// GatewayIP is the node's bridge address, where the API server reaches webhooks a test serves.
const GatewayIP = gatewayIP

// InstallFlowauth installs charts/flowauth as a user would (`helm install --wait`), with its
// default values but for the image, which is the webhook image in the node's registry; set
// adds values (see setValues). It returns when every replica is Ready.
func (c *Cluster) InstallFlowauth(ctx context.Context, set ...string) error {
	repo := strings.TrimSuffix(c.Images.Webhook, ":"+ImageTag)
	args := []string{"install", "flowauth", "charts/flowauth", "--namespace", FlowauthNamespace, "--create-namespace",
		"--set", "image.repository=" + repo, "--set", "image.tag=" + ImageTag, "--wait", "--timeout", "5m"}
	_, err := c.Helm(ctx, append(args, setValues(set)...)...)
	return err
}

// setValues are helm's flags for values: each a --set value, or a --set-json one with the
// prefix "json:" (a string with newlines, a list).
func setValues(set []string) []string {
	var args []string
	for _, s := range set {
		if j, ok := strings.CutPrefix(s, "json:"); ok {
			args = append(args, "--set-json", j)
		} else {
			args = append(args, "--set", s)
		}
	}
	return args
}

// UpgradeFlowauth changes values of the installed release (`helm upgrade --reuse-values
// --wait`) and waits for the rollout; set as for InstallFlowauth.
func (c *Cluster) UpgradeFlowauth(ctx context.Context, set ...string) error {
	args := []string{"upgrade", "flowauth", "charts/flowauth", "--namespace", FlowauthNamespace, "--reuse-values", "--wait", "--timeout", "4m"}
	if _, err := c.Helm(ctx, append(args, setValues(set)...)...); err != nil {
		return err
	}
	// In admission.mode policy there is no Deployment to wait for.
	if out, _, err := c.Kubectl(ctx, "-n", FlowauthNamespace, "get", "deployment", "flowauth", "--ignore-not-found", "-o", "name"); err != nil || out == "" {
		return err
	}
	_, _, err := c.Kubectl(ctx, "-n", FlowauthNamespace, "rollout", "status", "deployment/flowauth", "--timeout=3m")
	return err
}

// Running says whether a node started by this package is running now, and its folder.
func Running() (dir string, running bool) {
	r, err := readRecord()
	if err != nil {
		return "", false
	}
	return filepath.Dir(r.Dir), processStartTime(r.Owner) == r.OwnerSince
}

// StopRunning ends the running node's harness (SIGTERM: it tears everything down) and waits
// for it, or cleans up after it if it is gone.
func StopRunning(timeout time.Duration) error {
	r, err := readRecord()
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if processStartTime(r.Owner) != r.OwnerSince {
		return CleanupAfterCrash()
	}
	if err := syscall.Kill(r.Owner, syscall.SIGTERM); err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for processStartTime(r.Owner) == r.OwnerSince {
		if time.Now().After(deadline) {
			return fmt.Errorf("the node's harness (pid %d) did not stop within %s", r.Owner, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := readRecord(); err == nil {
		return CleanupAfterCrash() // it died before finishing its teardown
	}
	return nil
}
