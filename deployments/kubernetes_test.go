package deployments

import (
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	kusttypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	stock "github.com/retrigger/retrigger/shared/command"
	"github.com/retrigger/retrigger/shared/messaging"
)

var kubeDir = filepath.Join(repoRoot, "deployments", "kubernetes")

// The deployable kustomizations: the example overlay as its README says to
// use it (with mongodb.env made from mongodb.env.example), and the example
// with each component and with both, as variants/NAME. They are built in a
// copy of kubeDir (kubeTree) that holds those files.
var deployable = []string{
	filepath.Join("overlays", "example"),
	filepath.Join("variants", "keda"),
	filepath.Join("variants", "monitoring"),
	filepath.Join("variants", "keda-monitoring"),
}

// kustomizations returns the deployable kustomizations, relative to
// kubeTree, after checking that the example is the only overlay (a new
// one must be added to deployable).
func kustomizations(t *testing.T) []string {
	t.Helper()
	overlays, err := filepath.Glob(filepath.Join(kubeDir, "overlays", "*", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(overlays) != 1 || filepath.Base(filepath.Dir(overlays[0])) != "example" {
		t.Fatalf("overlays %v: want the example only (add others to deployable)", overlays)
	}
	return deployable
}

var (
	kubeTreeOnce sync.Once
	kubeTreeDir  string
	kubeTreeErr  error
)

// kubeTree returns the copy of kubeDir the deployable kustomizations are
// built in.
func kubeTree(t *testing.T) string {
	t.Helper()
	kubeTreeOnce.Do(func() { kubeTreeDir, kubeTreeErr = makeKubeTree(kubeDir, true) })
	if kubeTreeErr != nil {
		t.Fatalf("copying %s: %v", kubeDir, kubeTreeErr)
	}
	return kubeTreeDir
}

// makeKubeTree copies src into a new folder under binDir, without any
// mongodb.env of a developer's; with env, it writes the example's
// mongodb.env from its mongodb.env.example, and the variants.
func makeKubeTree(src string, env bool) (string, error) {
	dst, err := os.MkdirTemp(binDir, "kubernetes-")
	if err != nil {
		return "", err
	}
	err = filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if e.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if e.Name() == "mongodb.env" {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil || !env {
		return dst, err
	}
	example := filepath.Join(dst, "overlays", "example")
	data, err := os.ReadFile(filepath.Join(example, "mongodb.env.example"))
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(example, "mongodb.env"), data, 0o600); err != nil {
		return "", err
	}
	for name, components := range map[string][]string{"keda": {"keda"}, "monitoring": {"monitoring"}, "keda-monitoring": {"keda", "monitoring"}} {
		k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../../overlays/example\ncomponents:\n"
		for _, c := range components {
			k += "  - ../../components/" + c + "\n"
		}
		dir := filepath.Join(dst, "variants", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
			return "", err
		}
	}
	return dst, nil
}

var builds sync.Map // dir -> buildResult

type buildResult struct {
	objs []object
	err  error
}

// kustomizeBuild runs `kustomize build` of kubeTree/dir with krusty, and
// strictly decodes its output.
func kustomizeBuild(t *testing.T, dir string) []object {
	t.Helper()
	if r, ok := builds.Load(dir); ok {
		if r.(buildResult).err != nil {
			t.Fatalf("kustomize build %s: %v", dir, r.(buildResult).err)
		}
		return r.(buildResult).objs
	}
	var r buildResult
	r.objs, r.err = kustomizeBuildIn(kubeTree(t), dir)
	builds.Store(dir, r)
	if r.err != nil {
		t.Fatalf("kustomize build %s: %v", dir, r.err)
	}
	return r.objs
}

// kustomizeBuildIn runs `kustomize build` of root/dir with krusty on the
// real filesystem, and strictly decodes its output.
func kustomizeBuildIn(root, dir string) ([]object, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resMap, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join(root, dir))
	if err != nil {
		return nil, err
	}
	out, err := resMap.AsYaml()
	if err != nil {
		return nil, err
	}
	return decodeManifests("kustomize build "+dir, out)
}

// TestManifestsDecodeStrictly decodes every YAML file under kubernetes/
// (but the NATS chart's values, which are no manifest) into its Go type,
// refusing unknown and duplicate fields.
func TestManifestsDecodeStrictly(t *testing.T) {
	var files []string
	err := filepath.WalkDir(kubeDir, func(p string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, f := range files {
		rel, _ := filepath.Rel(kubeDir, f)
		if rel == filepath.Join("nats", "values.yaml") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := decodeManifests(rel, data)
		if err != nil {
			t.Error(err)
		}
		if len(objs) == 0 && err == nil {
			t.Errorf("%s: no manifest in it", rel)
		}
		for _, o := range objs {
			kinds[o.kind]++
		}
	}
	t.Logf("decoded %v", kinds)
	for _, k := range []string{"Deployment", "ConfigMap", "Component", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy", "ScaledObject", "ServiceMonitor", "PrometheusRule", "MongoDBCommunity", "Kustomization"} {
		if kinds[k] == 0 {
			t.Errorf("no %s among the manifests", k)
		}
	}
}

// TestStrictDecodingRejects shows the decoding can fail: a misspelt field,
// a field in the wrong case, a duplicate field and an unknown kind.
func TestStrictDecodingRejects(t *testing.T) {
	for name, doc := range map[string]string{
		"unknown field": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replcas: 2}\n",
		"wrong case":    "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{Port: 80}]}\n",
		"duplicate":     "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {A: '1'}\ndata: {B: '2'}\n",
		"unknown kind":  "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n",
		"keda field":    "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: x}\nspec: {scaleTargetRef: {name: y}, triggers: [], maxReplicas: 3}\n",
		"monitor field": "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: x}\nspec: {selector: {}, endpoints: [{port: http, pathh: /metrics}]}\n",
	} {
		if _, err := decodeManifests(name, []byte(doc)); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

// TestKustomizeBuilds builds the base and every overlay with krusty and
// checks what each must and must not contain.
func TestKustomizeBuilds(t *testing.T) {
	for _, dir := range kustomizations(t) {
		t.Run(dir, func(t *testing.T) {
			objs := kustomizeBuild(t, dir)
			deps := find[*appsv1.Deployment](objs)
			for _, name := range []string{"retrigger-producer", "retrigger-consumer", "retrigger-archiver"} {
				if deps[name] == nil {
					t.Errorf("no Deployment %s", name)
				}
			}
			for _, o := range objs {
				if m, ok := o.value.(interface{ GetLabels() map[string]string }); ok && m.GetLabels()["app.kubernetes.io/part-of"] != "retrigger" {
					t.Errorf("%s %s has no label app.kubernetes.io/part-of=retrigger", o.kind, o.name)
				}
			}
			for _, d := range deps {
				for _, c := range d.Spec.Template.Spec.Containers {
					if !strings.Contains(c.Image, "/") || !strings.Contains(c.Image, ":") {
						t.Errorf("%s: image %q: kustomize's images transformer did not set a registry and tag", d.Name, c.Image)
					}
				}
			}
			hpas := find[*autoscalingv2.HorizontalPodAutoscaler](objs)
			scaled := find[*scaledObject](objs)
			if strings.Contains(dir, "keda") {
				if len(hpas) > 0 {
					t.Errorf("HorizontalPodAutoscaler %v left beside KEDA's ScaledObject: two autoscalers would fight", keys(hpas))
				}
				if scaled["retrigger-consumer"] == nil {
					t.Errorf("no ScaledObject retrigger-consumer")
				}
			} else {
				if hpas["retrigger-consumer"] == nil {
					t.Errorf("no HorizontalPodAutoscaler retrigger-consumer")
				}
				if len(scaled) > 0 {
					t.Errorf("a ScaledObject without the keda component")
				}
			}
			monitors, rules := len(find[*monitoringv1.ServiceMonitor](objs)), len(find[*monitoringv1.PrometheusRule](objs))
			if want := boolInt(strings.Contains(dir, "monitoring")); monitors != want || rules != want {
				t.Errorf("%d ServiceMonitor and %d PrometheusRule, want %d of each", monitors, rules, want)
			}
			if secrets := find[*corev1.Secret](objs); len(secrets) != 1 {
				t.Errorf("Secrets %v, want the one the overlay makes from mongodb.env", keys(secrets))
			}
			if hpa := hpas["retrigger-consumer"]; hpa != nil {
				if ref := hpa.Spec.ScaleTargetRef; ref.Kind != "Deployment" || deps[ref.Name] == nil {
					t.Errorf("HPA targets %s %s, not a Deployment of the build", ref.Kind, ref.Name)
				}
				cpu := false
				for _, m := range hpa.Spec.Metrics {
					cpu = cpu || m.Resource != nil && m.Resource.Name == corev1.ResourceCPU
				}
				if !cpu {
					t.Errorf("HPA does not scale on CPU")
				}
			}
			pdbs := find[*policyv1.PodDisruptionBudget](objs)
			if pdb := pdbs["retrigger-consumer"]; pdb == nil {
				t.Errorf("no PodDisruptionBudget retrigger-consumer")
			} else if d := deps["retrigger-consumer"]; d != nil && !selects(t, pdb.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
				t.Errorf("the consumer PDB does not select the consumer pods")
			}
			nps := find[*networkingv1.NetworkPolicy](objs)
			if len(nps) == 0 {
				t.Errorf("no NetworkPolicy")
			}
			for _, d := range deps {
				covered := false
				for _, np := range nps {
					covered = covered || selects(t, np.Spec.PodSelector.MatchLabels, d.Spec.Template.Labels)
				}
				if !covered {
					t.Errorf("no NetworkPolicy selects the pods of %s", d.Name)
				}
			}
		})
	}
}

func keys[T any](m map[string]T) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// selects reports whether a non-empty selector selects the labels.
func selects(t *testing.T, selector, lbls map[string]string) bool {
	t.Helper()
	if len(selector) == 0 {
		return false
	}
	return labels.SelectorFromSet(selector).Matches(labels.Set(lbls))
}

// deploymentCommand returns the command a Deployment's container runs,
// failing if it is not a binary of the image.
func deploymentCommand(t *testing.T, d *appsv1.Deployment, c corev1.Container) *command {
	t.Helper()
	if len(c.Command) == 0 {
		t.Errorf("%s/%s: no command (the image has no default command)", d.Name, c.Name)
		return nil
	}
	cmd := imageBinary(t, c.Command[0])
	if cmd == nil {
		t.Errorf("%s/%s: command %s is not a binary the Dockerfile puts in /usr/local/bin", d.Name, c.Name, c.Command[0])
	}
	return cmd
}

// forEachContainer calls f for each container of each Deployment of each
// kustomization, with the container's resolved environment and command.
func forEachContainer(t *testing.T, f func(where string, d *appsv1.Deployment, c corev1.Container, cmd *command, env map[string]string)) {
	t.Helper()
	for _, dir := range kustomizations(t) {
		objs := kustomizeBuild(t, dir)
		cms := find[*corev1.ConfigMap](objs)
		secrets := find[*corev1.Secret](objs)
		deps := find[*appsv1.Deployment](objs)
		for _, name := range keys(deps) {
			d := deps[name]
			for _, c := range d.Spec.Template.Spec.Containers {
				env, err := envOf(c, cms, secrets)
				if err != nil {
					t.Errorf("%s: %s: %v", dir, d.Name, err)
				}
				cmd := deploymentCommand(t, d, c)
				if cmd == nil {
					continue
				}
				if cmd.skipped != "" {
					t.Logf("%s: %s runs %s, which is not built yet", dir, d.Name, cmd.name)
					continue
				}
				f(dir+": "+d.Name+"/"+c.Name, d, c, cmd, env)
			}
		}
	}
}

// TestKubernetesEnvAreFlags: every RETRIGGER_* variable a container gets
// (env, and the ConfigMaps and Secrets of envFrom) is a flag of the command
// it runs, as the built command's -help lists it.
func TestKubernetesEnvAreFlags(t *testing.T) {
	miss := missing{}
	n := 0
	forEachContainer(t, func(where string, d *appsv1.Deployment, c corev1.Container, cmd *command, env map[string]string) {
		n += len(retriggerVars(env))
		checkEnvFlags(t, where, cmd, env, miss)
		if env["RETRIGGER_MONGODB_URI"] == "" {
			t.Errorf("%s: no RETRIGGER_MONGODB_URI (a required flag)", where)
		}
		if cmd.name == "consumer" && env["RETRIGGER_HANDLERS"] == "" {
			t.Errorf("%s: no RETRIGGER_HANDLERS (a required flag)", where)
		}
	})
	t.Logf("%d variables checked", n)
	miss.skipIfAny(t, "RETRIGGER_* variables of the Deployments")
}

// TestProbesAndPorts: the probes hit /healthz (startup, liveness) and
// /readyz (readiness) on the port the command serves, which is the port of
// RETRIGGER_HTTP_ADDR; the metrics Service and the ServiceMonitor reach
// that port by name and scrape /metrics.
func TestProbesAndPorts(t *testing.T) {
	miss := missing{}
	forEachContainer(t, func(where string, d *appsv1.Deployment, c corev1.Container, cmd *command, env map[string]string) {
		addr, hasFlag := setting(cmd, env, "http-addr")
		if !hasFlag {
			miss.add("http-addr", cmd.name)
		}
		port, err := addrPort(addr)
		if err != nil {
			t.Errorf("%s: RETRIGGER_HTTP_ADDR: %v", where, err)
			return
		}
		var http *corev1.ContainerPort
		for i, p := range c.Ports {
			if p.Name == "http" {
				http = &c.Ports[i]
			}
		}
		if http == nil {
			t.Errorf("%s: no container port named http", where)
			return
		}
		if strconv.Itoa(int(http.ContainerPort)) != port {
			t.Errorf("%s: container port http is %d, the command listens on %s", where, http.ContainerPort, addr)
		}
		for _, p := range []struct {
			name  string
			probe *corev1.Probe
			path  string
		}{{"startupProbe", c.StartupProbe, "/healthz"}, {"livenessProbe", c.LivenessProbe, "/healthz"}, {"readinessProbe", c.ReadinessProbe, "/readyz"}} {
			if p.probe == nil || p.probe.HTTPGet == nil {
				t.Errorf("%s: no httpGet %s", where, p.name)
				continue
			}
			g := p.probe.HTTPGet
			if g.Path != p.path {
				t.Errorf("%s: %s path %s, want %s", where, p.name, g.Path, p.path)
			}
			if !portIs(g.Port, *http) {
				t.Errorf("%s: %s port %s is not the http port %d", where, p.name, g.Port.String(), http.ContainerPort)
			}
		}
	})

	objs := kustomizeBuild(t, filepath.Join("variants", "monitoring"))
	svc := find[*corev1.Service](objs)["retrigger-metrics"]
	if svc == nil {
		t.Fatal("no Service retrigger-metrics")
	}
	var svcPort *corev1.ServicePort
	for i, p := range svc.Spec.Ports {
		if p.Name == "http" {
			svcPort = &svc.Spec.Ports[i]
		}
	}
	if svcPort == nil || svcPort.TargetPort != intstr.FromString("http") {
		t.Errorf("Service retrigger-metrics has no port http with targetPort http: %+v", svc.Spec.Ports)
	}
	for _, d := range find[*appsv1.Deployment](objs) {
		if !selects(t, svc.Spec.Selector, d.Spec.Template.Labels) {
			t.Errorf("Service retrigger-metrics does not select the pods of %s", d.Name)
		}
	}
	sm := find[*monitoringv1.ServiceMonitor](objs)["retrigger"]
	if sm == nil {
		t.Fatal("no ServiceMonitor retrigger")
	}
	if !selects(t, sm.Spec.Selector.MatchLabels, svc.Labels) {
		t.Errorf("ServiceMonitor selector %v does not select Service retrigger-metrics (labels %v)", sm.Spec.Selector.MatchLabels, svc.Labels)
	}
	for _, ep := range sm.Spec.Endpoints {
		if svcPort != nil && ep.Port != svcPort.Name {
			t.Errorf("ServiceMonitor endpoint port %q is not the Service's port %q", ep.Port, svcPort.Name)
		}
		if ep.Path != "/metrics" {
			t.Errorf("ServiceMonitor endpoint path %q, want /metrics", ep.Path)
		}
	}
	miss.skipIfAny(t, "probes and ports")
}

func portIs(p intstr.IntOrString, c corev1.ContainerPort) bool {
	if p.Type == intstr.String {
		return p.StrVal == c.Name
	}
	return p.IntVal == c.ContainerPort
}

// TestGracePeriodExceedsDrain: Kubernetes kills a pod
// terminationGracePeriodSeconds after SIGTERM; the command must have
// drained and exited by then, so the grace period exceeds its
// -drain-timeout (set in its environment, or the default its -help shows)
// and the seconds past it that command.Run may take to exit.
func TestGracePeriodExceedsDrain(t *testing.T) {
	miss := missing{}
	forEachContainer(t, func(where string, d *appsv1.Deployment, c corev1.Container, cmd *command, env map[string]string) {
		v, hasFlag := setting(cmd, env, "drain-timeout")
		if !hasFlag {
			miss.add("drain-timeout", cmd.name)
			if v == "" {
				return
			}
		}
		drain, err := time.ParseDuration(v)
		if err != nil {
			t.Errorf("%s: drain timeout %q: %v", where, v, err)
			return
		}
		grace := d.Spec.Template.Spec.TerminationGracePeriodSeconds
		if grace == nil {
			t.Errorf("%s: no terminationGracePeriodSeconds (the default 30s)", where)
			return
		}
		// past the drain, a command exits within StopGrace and CloseTimeout
		if need := drain + stock.ExitGrace; time.Duration(*grace)*time.Second <= need {
			t.Errorf("%s: terminationGracePeriodSeconds %d does not exceed the drain timeout %s and the %s a command may take past it", where, *grace, drain, need-drain)
		}
	})
	miss.skipIfAny(t, "grace periods")
}

// TestPodSecurity: non-root, read-only root filesystem, no privilege
// escalation, every capability dropped, requests and limits.
func TestPodSecurity(t *testing.T) {
	for _, dir := range kustomizations(t) {
		for _, d := range find[*appsv1.Deployment](kustomizeBuild(t, dir)) {
			where := dir + ": " + d.Name
			pod := d.Spec.Template.Spec
			psc := pod.SecurityContext
			if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
				t.Errorf("%s: mounts a service account token it does not need", where)
			}
			for _, c := range pod.Containers {
				sc := c.SecurityContext
				if sc == nil {
					t.Errorf("%s/%s: no securityContext", where, c.Name)
					continue
				}
				nonRoot := sc.RunAsNonRoot != nil && *sc.RunAsNonRoot || sc.RunAsNonRoot == nil && psc != nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot
				if !nonRoot {
					t.Errorf("%s/%s: runAsNonRoot is not true", where, c.Name)
				}
				if psc != nil && psc.RunAsUser != nil && *psc.RunAsUser == 0 || sc.RunAsUser != nil && *sc.RunAsUser == 0 {
					t.Errorf("%s/%s: runs as uid 0", where, c.Name)
				}
				if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
					t.Errorf("%s/%s: readOnlyRootFilesystem is not true", where, c.Name)
				}
				if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
					t.Errorf("%s/%s: allowPrivilegeEscalation is not false", where, c.Name)
				}
				if sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) > 0 {
					t.Errorf("%s/%s: capabilities %+v, want drop [ALL] and no add", where, c.Name, sc.Capabilities)
				}
				for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
					if _, ok := c.Resources.Requests[r]; !ok {
						t.Errorf("%s/%s: no %s request", where, c.Name, r)
					}
					if _, ok := c.Resources.Limits[r]; !ok {
						t.Errorf("%s/%s: no %s limit", where, c.Name, r)
					}
				}
			}
		}
	}
}

// TestProducerStandsBy: two producers, one leading and one standing by,
// replaced one at a time in a rollout (the leadership lease makes two at
// once safe).
func TestProducerStandsBy(t *testing.T) {
	for _, dir := range kustomizations(t) {
		d := find[*appsv1.Deployment](kustomizeBuild(t, dir))["retrigger-producer"]
		if d == nil {
			continue
		}
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
			t.Errorf("%s: producer replicas %v, want 2 (a leader and a standby)", dir, d.Spec.Replicas)
		}
		if d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || d.Spec.Strategy.RollingUpdate == nil ||
			d.Spec.Strategy.RollingUpdate.MaxUnavailable == nil || d.Spec.Strategy.RollingUpdate.MaxUnavailable.IntValue() != 0 {
			t.Errorf("%s: producer strategy %+v, want a RollingUpdate with maxUnavailable 0 (a standby always runs)", dir, d.Spec.Strategy)
		}
	}
}

// kedaMetadata are the nats-jetstream scaler's parameters (keda.sh docs).
var kedaMetadata = map[string]bool{
	"natsServerMonitoringEndpoint": true, "account": true, "stream": true, "consumer": true,
	"lagThreshold": true, "activationLagThreshold": true, "useHttps": true,
}

// TestKEDATriggersMatchCode: the ScaledObject has one nats-jetstream
// trigger per event type of the consumer's RETRIGGER_HANDLERS, on that
// type's durable consumer of the events stream, named as the code names
// them with the configured stream prefix, and reads NATS's monitoring port.
func TestKEDATriggersMatchCode(t *testing.T) {
	objs := kustomizeBuild(t, filepath.Join("variants", "keda"))
	so := find[*scaledObject](objs)["retrigger-consumer"]
	if so == nil {
		t.Fatal("no ScaledObject retrigger-consumer")
	}
	deps := find[*appsv1.Deployment](objs)
	consumer := deps["retrigger-consumer"]
	if ref := so.Spec.ScaleTargetRef; ref == nil || ref.Name != consumer.Name || ref.Kind != "" && ref.Kind != "Deployment" {
		t.Errorf("scaleTargetRef %+v is not Deployment %s", so.Spec.ScaleTargetRef, consumer.Name)
	}
	if so.Spec.MinReplicaCount == nil || *so.Spec.MinReplicaCount < 1 || so.Spec.MaxReplicaCount == nil || *so.Spec.MaxReplicaCount < *so.Spec.MinReplicaCount {
		t.Errorf("replica bounds min %v max %v", so.Spec.MinReplicaCount, so.Spec.MaxReplicaCount)
	}
	cmd := builtCommand(t, "consumer")
	env, err := envOf(consumer.Spec.Template.Spec.Containers[0], find[*corev1.ConfigMap](objs), find[*corev1.Secret](objs))
	if err != nil {
		t.Fatal(err)
	}
	handlers, _ := setting(cmd, env, "handlers")
	types, err := handlerTypes(handlers)
	if err != nil {
		t.Fatalf("consumer RETRIGGER_HANDLERS: %v", err)
	}
	prefix, ok := setting(cmd, env, "stream-prefix")
	if !ok || prefix == "" {
		t.Fatalf("the consumer has no -stream-prefix")
	}
	names := messaging.Names{StreamPrefix: prefix}
	want := map[string]string{} // consumer -> type
	for _, typ := range types {
		c, err := workersConsumer(prefix, typ)
		if err != nil {
			t.Fatal(err)
		}
		want[c] = typ
	}
	got := map[string]bool{}
	natsPort := natsMonitorPort(t)
	for i, tr := range so.Spec.Triggers {
		where := "trigger " + strconv.Itoa(i) + " (" + tr.Name + ")"
		if tr.Type != "nats-jetstream" {
			t.Errorf("%s: type %q, want nats-jetstream", where, tr.Type)
			continue
		}
		for k := range tr.Metadata {
			if !kedaMetadata[k] {
				t.Errorf("%s: unknown nats-jetstream parameter %q", where, k)
			}
		}
		m := tr.Metadata
		if m["stream"] != names.EventsStream() {
			t.Errorf("%s: stream %q, want %q", where, m["stream"], names.EventsStream())
		}
		if _, ok := want[m["consumer"]]; !ok {
			t.Errorf("%s: consumer %q is not the workers consumer of a handled type (%v)", where, m["consumer"], keys(want))
		}
		if got[m["consumer"]] {
			t.Errorf("%s: a second trigger on %s", where, m["consumer"])
		}
		got[m["consumer"]] = true
		if tr.Name != "" && tr.Name != want[m["consumer"]] {
			t.Errorf("%s: named %q but scales on type %q", where, tr.Name, want[m["consumer"]])
		}
		if n, err := strconv.Atoi(m["lagThreshold"]); err != nil || n <= 0 {
			t.Errorf("%s: lagThreshold %q is not a positive integer", where, m["lagThreshold"])
		}
		if m["account"] != "$G" {
			t.Errorf("%s: account %q, want $G (NATS without accounts)", where, m["account"])
		}
		host, port, err := net.SplitHostPort(m["natsServerMonitoringEndpoint"])
		if err != nil || host == "" || port != natsPort {
			t.Errorf("%s: natsServerMonitoringEndpoint %q is not HOST:%s (the NATS chart's monitor port)", where, m["natsServerMonitoringEndpoint"], natsPort)
		}
	}
	for c, typ := range want {
		if !got[c] {
			t.Errorf("no trigger for type %s (consumer %s)", typ, c)
		}
	}
}

// natsValues reads the NATS Helm chart values file.
func natsValues(t *testing.T) map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(kubeDir, "nats", "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.UnmarshalStrict(data, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// lookupPath returns the value at a dotted path of nested maps.
func lookupPath(v any, p string) (any, bool) {
	for _, k := range strings.Split(p, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[k]; !ok {
			return nil, false
		}
	}
	return v, true
}

func natsMonitorPort(t *testing.T) string {
	p, ok := lookupPath(natsValues(t), "config.monitor.port")
	if !ok {
		t.Fatal("nats values: no config.monitor.port")
	}
	return strconv.Itoa(int(toFloat(p)))
}

func toFloat(v any) float64 {
	switch n := v.(type) {
	case float64:
		return n
	case int:
		return float64(n)
	case int64:
		return float64(n)
	}
	return -1
}

// TestNATSHelmValues: the chart values ask for what the issue and the
// manifests need. Helm is not available here, so the chart is not rendered:
// this checks the keys of the official chart's values.yaml (2.14.x).
func TestNATSHelmValues(t *testing.T) {
	v := natsValues(t)
	for p, want := range map[string]any{
		"config.cluster.enabled":                 true,
		"config.cluster.replicas":                float64(3),
		"config.jetstream.enabled":               true,
		"config.jetstream.fileStore.enabled":     true,
		"config.jetstream.fileStore.pvc.enabled": true,
		"config.jetstream.merge.sync_interval":   "always",
		"config.monitor.enabled":                 true,
		"promExporter.enabled":                   true,
	} {
		got, ok := lookupPath(v, p)
		if !ok || got != want {
			t.Errorf("nats values %s = %v, want %v", p, got, want)
		}
	}
	// The merge block goes verbatim into the server's jetstream {} block:
	// it must be valid NATS configuration.
	merge, _ := lookupPath(v, "config.jetstream.merge")
	checkJetStreamBlock(t, merge.(map[string]any))
}

// TestExampleSecretHasNoCredentials: the example's connection string
// carries the placeholder password only, and the overlay makes the Secret
// the commands read from it.
func TestExampleSecretHasNoCredentials(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(kubeDir, "overlays", "example", "mongodb.env.example"))
	if err != nil {
		t.Fatal(err)
	}
	k, v, ok := strings.Cut(strings.TrimSpace(string(data)), "=")
	if !ok || k != "RETRIGGER_MONGODB_URI" {
		t.Fatalf("mongodb.env.example: want RETRIGGER_MONGODB_URI=..., got %q", data)
	}
	u, err := url.Parse(v)
	if err != nil {
		t.Fatalf("%s: %v", k, err)
	}
	if p, ok := u.User.Password(); !ok || p != "CHANGE-ME" {
		t.Errorf("%s carries a password other than the placeholder CHANGE-ME", k)
	}
	for _, s := range find[*corev1.Secret](kustomizeBuild(t, filepath.Join("overlays", "example"))) {
		if !strings.HasPrefix(s.Name, "retrigger-mongodb") || string(s.Data[k]) != v {
			t.Errorf("Secret %s: want retrigger-mongodb with the %s of mongodb.env", s.Name, k)
		}
	}
}

// Applying the base overwrites no Secret and names no image: the Secret
// and the image come from the overlay, the image from one setting there.
// Without its mongodb.env the overlay does not build, naming the file.
func TestBaseHasNoSecretAndOverlaySetsTheImage(t *testing.T) {
	base, err := kustomizeBuildIn(kubeDir, "base")
	if err != nil {
		t.Fatal(err)
	}
	if secrets := find[*corev1.Secret](base); len(secrets) > 0 {
		t.Errorf("the base holds Secrets %v: applying it would overwrite the real ones", keys(secrets))
	}
	for _, d := range find[*appsv1.Deployment](base) {
		for _, c := range d.Spec.Template.Spec.Containers {
			if c.Image != "retrigger" {
				t.Errorf("base %s: image %q, want the name the overlay's images setting replaces, retrigger", d.Name, c.Image)
			}
		}
	}
	// one images setting in the whole tree, in the example overlay
	var settings []string
	err = filepath.WalkDir(kubeDir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || e.Name() != "kustomization.yaml" {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var k kusttypes.Kustomization
		if err := yaml.Unmarshal(data, &k); err != nil {
			return err
		}
		for _, img := range k.Images {
			rel, _ := filepath.Rel(kubeDir, p)
			settings = append(settings, rel+": "+img.Name)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{filepath.Join("overlays", "example", "kustomization.yaml") + ": retrigger"}; !slices.Equal(settings, want) {
		t.Errorf("image settings %v, want %v", settings, want)
	}
	bare, err := makeKubeTree(kubeDir, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kustomizeBuildIn(bare, filepath.Join("overlays", "example")); err == nil || !strings.Contains(err.Error(), "mongodb.env") {
		t.Errorf("the example overlay without mongodb.env: %v, want an error naming mongodb.env", err)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
