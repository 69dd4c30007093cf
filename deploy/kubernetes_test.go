package deploy

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/querylog/querylog/internal/testutil"
)

// kinds are the objects the manifests may hold, each decoded into its API type.
var kinds = map[string]func() any{
	"ServiceAccount":     func() any { return &corev1.ServiceAccount{} },
	"ConfigMap":          func() any { return &corev1.ConfigMap{} },
	"Service":            func() any { return &corev1.Service{} },
	"ClusterRole":        func() any { return &rbacv1.ClusterRole{} },
	"ClusterRoleBinding": func() any { return &rbacv1.ClusterRoleBinding{} },
	"Deployment":         func() any { return &appsv1.Deployment{} },
	"DaemonSet":          func() any { return &appsv1.DaemonSet{} },
}

// render runs kubectl kustomize (offline) on an overlay and decodes every object strictly: an
// unknown field, a field in the wrong place or twice fails, as does an unexpected kind.
func render(t *testing.T, overlay string) map[string]any {
	t.Helper()
	out, err := exec.Command("kubectl", "kustomize", filepath.Join("kubernetes/overlays", overlay)).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", overlay, err, out)
	}
	objs := map[string]any{}
	for _, doc := range splitYAML(string(out)) {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			t.Fatalf("%s: %v", overlay, err)
		}
		newObj, ok := kinds[tm.Kind]
		if !ok {
			t.Fatalf("%s: unexpected kind %q:\n%s", overlay, tm.Kind, doc)
		}
		obj := newObj()
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			t.Fatalf("%s: %s: %v", overlay, tm.Kind, err)
		}
		name := obj.(metav1.Object).GetName()
		objs[tm.Kind+"/"+name] = obj
	}
	return objs
}

// TestManifests renders both overlays, checks what docs/kubernetes.md says they change in the
// stock CoreDNS, and runs their Corefile on the build the image ships, against the fake API.
func TestManifests(t *testing.T) {
	t.Parallel() // beside TestManifests/TestImage: both mostly wait (for the API sync, the flush, the stop)
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("kubectl is not installed: the overlays are not rendered (kubectl kustomize)")
	}
	corefile := manifestCorefile(t)
	for _, variant := range []struct{ overlay, kind, node string }{
		{"emptydir", "Deployment", "metadata.name"},
		{"hostpath", "DaemonSet", "spec.nodeName"},
	} {
		t.Run(variant.overlay, func(t *testing.T) {
			objs := render(t, variant.overlay)
			cm, ok := objs["ConfigMap/coredns"].(*corev1.ConfigMap)
			if !ok || cm.Data["Corefile"] != corefile {
				t.Fatalf("the ConfigMap coredns does not hold %s's Corefile", corefilePatch)
			}
			var spec corev1.PodSpec
			switch w := objs[variant.kind+"/coredns"].(type) {
			case *appsv1.Deployment:
				spec = w.Spec.Template.Spec
			case *appsv1.DaemonSet:
				spec = w.Spec.Template.Spec
			default:
				t.Fatalf("no %s coredns", variant.kind)
			}
			for _, other := range []string{"Deployment/coredns", "DaemonSet/coredns"} {
				if _, ok := objs[other]; ok && other != variant.kind+"/coredns" {
					t.Errorf("%s renders %s too", variant.overlay, other)
				}
			}
			checkPod(t, spec, corefile, variant.node)
			checkVolume(t, variant.overlay, spec, corefile)
		})
	}

	t.Run("corefile runs", func(t *testing.T) {
		stage := staticBuild(t)
		l := newLocal(t)
		c := startCluster(t, fmt.Sprintf("127.0.0.1:%d", testutil.Ports(t, 1)[0]))
		l.forward = c.upstream
		dir := t.TempDir()
		l.db = filepath.Join(dir, "querylog.db")
		path := filepath.Join(dir, "Corefile")
		writeFile(t, path, localize(t, corefile, l, c))
		cmd := exec.Command(filepath.Join(stage, "coredns"), "-conf", path)
		cmd.Env = coreDNSEnv
		took := serve(t, cmd, l, c, l.db)
		t.Logf("SIGTERM to exit: %s", took.Round(100*time.Millisecond))
	})
}

// checkPod checks the coredns container: image, Corefile path, security context, resources,
// grace period, the password from a Secret and the node name from the pod or the node.
func checkPod(t *testing.T, spec corev1.PodSpec, corefile, nodeField string) {
	t.Helper()
	var ctr *corev1.Container
	for i := range spec.Containers {
		if spec.Containers[i].Name == "coredns" {
			ctr = &spec.Containers[i]
		}
	}
	if ctr == nil {
		t.Fatal("no container coredns")
	}
	if !strings.HasPrefix(ctr.Image, "querylog/coredns:") {
		t.Errorf("image %s, want querylog/coredns (the component's images:)", ctr.Image)
	}
	if want := containerfileCmd(t); !slices.Equal(ctr.Args, want) {
		t.Errorf("args %q, want the image's CMD %q", ctr.Args, want)
	}

	sc := ctr.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser != 65532 ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Capabilities == nil ||
		!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
		!slices.Equal(sc.Capabilities.Add, []corev1.Capability{"NET_BIND_SERVICE"}) {
		t.Errorf("container securityContext %+v, want runAsNonRoot, UID 65532, read-only root, no escalation, ALL dropped but NET_BIND_SERVICE", sc)
	}
	if psc := spec.SecurityContext; psc == nil || psc.RunAsUser == nil || *psc.RunAsUser != 65532 || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Errorf("pod securityContext %+v, want runAsNonRoot and UID 65532", psc)
	}
	if user := containerfileLine(t, "USER"); user != "65532:65532" {
		t.Errorf("Containerfile USER %s, want 65532:65532 as the manifests run it", user)
	}
	if lim := ctr.Resources.Limits[corev1.ResourceMemory]; lim.Cmp(resource.MustParse("170Mi")) != 0 {
		t.Errorf("memory limit %s, want the stock 170Mi", lim.String())
	}

	if gml := envValue(ctr.Env, "GOMEMLIMIT"); gml != "150MiB" {
		t.Errorf("GOMEMLIMIT %q, want 150MiB: below the 170Mi limit by the binary's pages and SQLite's memory (bench/README.md, Memory budget)", gml)
	}
	if qm := envValue(ctr.Env, "QUERYLOG_MAX_MEMORY"); qm != "48MiB" {
		t.Errorf("QUERYLOG_MAX_MEMORY %q, want 48MiB: what the 170Mi limit leaves a querylog command run by kubectl exec beside CoreDNS's worst case (docs/kubernetes.md, Memory)", qm)
	}

	lameduck := duration(t, corefileSetting(corefile, "lameduck", "0s"))
	shutdown := duration(t, corefileSetting(corefile, "shutdown_timeout", "5s"))
	need := lameduck + 2*shutdown // the drain, then the shipper's last pass
	if g := spec.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second < need {
		t.Errorf("terminationGracePeriodSeconds %v, want at least lameduck + 2 x shutdown_timeout = %s", g, need)
	}

	env := map[string]corev1.EnvVar{}
	for _, e := range ctr.Env {
		env[e.Name] = e
	}
	pw := regexp.MustCompile(`ship_password env (\S+)`).FindStringSubmatch(corefile)
	if pw == nil {
		t.Fatal("the Corefile takes no ship_password from the environment")
	}
	if e := env[pw[1]]; e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.Value != "" {
		t.Errorf("env %s: %+v, want it from a Secret (secretKeyRef)", pw[1], e)
	}
	node := regexp.MustCompile(`node \{\$(\w+)\}`).FindStringSubmatch(corefile)
	if node == nil {
		t.Fatal("the Corefile takes no node name from the environment")
	}
	if e := env[node[1]]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != nodeField {
		t.Errorf("env %s: %+v, want it from %s", node[1], e, nodeField)
	}

	for _, line := range []string{`metadata`, `pods verified`} {
		if !regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(line) + `$`).MatchString(corefile) {
			t.Errorf("the Corefile has no line %q", line)
		}
	}
	mounts := map[string]string{}
	for _, m := range ctr.VolumeMounts {
		mounts[m.MountPath] = m.Name
	}
	if mounts["/var/lib/querylog"] != "querylog" || mounts["/etc/coredns"] != "config-volume" {
		t.Errorf("mounts %v, want querylog at /var/lib/querylog and config-volume at /etc/coredns", mounts)
	}
	if db := corefileSetting(corefile, "querylog", ""); filepath.Dir(db) != "/var/lib/querylog" {
		t.Errorf("querylog PATH %s is not in the volume /var/lib/querylog", db)
	}
}

// checkVolume checks the volume behind /var/lib/querylog: an emptyDir whose sizeLimit holds
// max_size and the WAL, or the node's /var/lib/querylog handed to UID 65532 by an init container.
func checkVolume(t *testing.T, overlay string, spec corev1.PodSpec, corefile string) {
	t.Helper()
	var vol *corev1.Volume
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == "querylog" {
			vol = &spec.Volumes[i]
		}
	}
	if vol == nil {
		t.Fatal("no volume querylog")
	}
	switch overlay {
	case "emptydir":
		if vol.EmptyDir == nil || vol.EmptyDir.SizeLimit == nil || vol.EmptyDir.Medium != "" {
			t.Fatalf("volume %+v, want an emptyDir on disk with a sizeLimit", vol.VolumeSource)
		}
		// max_size as a Kubernetes quantity: 384MiB is 384Mi.
		maxSize, err := resource.ParseQuantity(strings.TrimSuffix(corefileSetting(corefile, "max_size", ""), "B"))
		if err != nil {
			t.Fatalf("max_size: %v", err)
		}
		need := maxSize.Value() + 64<<20 // the WAL is truncated to 64 MiB after each checkpoint
		if got := vol.EmptyDir.SizeLimit.Value(); got < need {
			t.Errorf("sizeLimit %s is below max_size %s + 64Mi of WAL: the kubelet would evict the pod", vol.EmptyDir.SizeLimit, maxSize.String())
		}
	case "hostpath":
		if vol.HostPath == nil || vol.HostPath.Path != "/var/lib/querylog" || vol.HostPath.Type == nil || *vol.HostPath.Type != corev1.HostPathDirectoryOrCreate {
			t.Fatalf("volume %+v, want hostPath /var/lib/querylog, DirectoryOrCreate", vol.VolumeSource)
		}
		if len(spec.InitContainers) != 1 || !strings.Contains(strings.Join(spec.InitContainers[0].Command, " "), "chown 65532:65532 /var/lib/querylog") {
			t.Errorf("init containers %+v, want one handing /var/lib/querylog to 65532", spec.InitContainers)
		}
	}
}

// containerfileLine returns the arguments of the Containerfile's instruction.
func containerfileLine(t *testing.T, instr string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + instr + ` (.*)$`).FindStringSubmatch(readFile(t, "../Containerfile"))
	if m == nil {
		t.Fatalf("Containerfile has no %s", instr)
	}
	return m[1]
}

// containerfileCmd returns the image's default arguments (CMD, exec form).
func containerfileCmd(t *testing.T) []string {
	t.Helper()
	var args []string
	if err := yaml.Unmarshal([]byte(containerfileLine(t, "CMD")), &args); err != nil {
		t.Fatalf("Containerfile CMD: %v", err)
	}
	return args
}

func duration(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// envValue is the literal value of the variable name in env, "" if it is not set so.
func envValue(env []corev1.EnvVar, name string) string {
	for _, e := range env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}
