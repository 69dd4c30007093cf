package deploy

import (
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestImage builds the Containerfile with podman and runs the image as Kubernetes would, as far
// as this sandbox allows (podman builds here but cannot run containers): its root file system,
// extracted with podman create + export, is mounted read-only (readOnlyRootFilesystem) in a
// mount namespace of its own, with a writable /var/lib/querylog owned by 65532, the Corefile at
// /etc/coredns and /etc/resolv.conf mounted over it as the kubelet mounts them, and the image's
// /coredns runs there as 65532:65532 (chroot --userspec) on the manifests' Corefile against the
// fake API. The image's /querylog stats then reads the log.
func TestImage(t *testing.T) {
	t.Parallel() // beside TestManifests/TestImage: both mostly wait (for the API sync, the flush, the stop)
	if _, err := exec.LookPath("podman"); err != nil {
		t.Skip("podman is not installed: the image is not built (.ci/run installs it)")
	}
	if os.Geteuid() != 0 {
		t.Skip("not root: the image's root file system cannot be mounted and entered (mount, chroot)")
	}
	for _, cmd := range []string{"unshare", "chroot", "mount", "tar"} {
		if _, err := exec.LookPath(cmd); err != nil {
			t.Skipf("%s is not installed: the image's root file system cannot be entered", cmd)
		}
	}
	stage := staticBuild(t)
	image := fmt.Sprintf("localhost/querylog-test/coredns:%d", os.Getpid())
	run(t, "make", "-s", "-C", "..", "image-build", "STAGE="+stage, "IMAGE="+image, "CONTAINER=podman")
	t.Cleanup(func() { exec.Command("podman", "rmi", "-f", image).Run() })

	var config struct {
		User       string
		Env        []string
		Entrypoint []string
		Cmd        []string
		Volumes    map[string]struct{}
	}
	if err := json.Unmarshal([]byte(run(t, "podman", "image", "inspect", "--format", "{{json .Config}}", image)), &config); err != nil {
		t.Fatal(err)
	}
	if config.User != "65532:65532" || !slices.Equal(config.Entrypoint, []string{"/coredns"}) ||
		!slices.Equal(config.Cmd, []string{"-conf", "/etc/coredns/Corefile"}) {
		t.Errorf("image config %+v, want user 65532:65532 running /coredns -conf /etc/coredns/Corefile", config)
	}
	if _, ok := config.Volumes["/var/lib/querylog"]; !ok {
		t.Errorf("image volumes %v, want /var/lib/querylog", config.Volumes)
	}
	size := run(t, "podman", "image", "inspect", "--format", "{{.Size}}", image)
	t.Logf("image size: %s bytes", strings.TrimSpace(size))

	// The root file system, as podman export gives it.
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	id := strings.TrimSpace(run(t, "podman", "create", image))
	tarball := filepath.Join(dir, "rootfs.tar")
	run(t, "podman", "export", "-o", tarball, id)
	run(t, "podman", "rm", id)
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "tar", "-xf", tarball, "-C", rootfs)
	checkRootfs(t, rootfs)
	// Mount points, which a container runtime creates in the same way.
	if err := os.Mkdir(filepath.Join(rootfs, "proc"), 0o555); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(rootfs, "etc/resolv.conf"), "")

	// What the pod mounts: the log volume (owned by 65532, as fsGroup or the init container
	// leaves it), the ConfigMap and resolv.conf, naming the test's upstream (port 53: a
	// resolv.conf has no port).
	vol := filepath.Join(dir, "volume")
	if err := os.Mkdir(vol, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(vol, 65532, 65532); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "configmap")
	if err := os.Mkdir(conf, 0o755); err != nil {
		t.Fatal(err)
	}
	l := newLocal(t)
	c := startCluster(t, freeLoopback53(t))
	writeFile(t, filepath.Join(conf, "Corefile"), localize(t, manifestCorefile(t), l, c))
	resolv := filepath.Join(dir, "resolv.conf")
	writeFile(t, resolv, "nameserver "+strings.TrimSuffix(c.upstream, ":53")+"\n")

	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	pod := func(args ...string) *exec.Cmd {
		script := `set -e
mount --bind "$1" "$2"
mount -o remount,bind,ro "$2"
mount -t proc proc "$2/proc"
mount --bind "$3" "$2/var/lib/querylog"
mount --bind -o ro "$4" "$2/etc/coredns"
mount --bind -o ro "$5" "$2/etc/resolv.conf"
root=$2
shift 5
exec chroot --userspec=65532:65532 "$root" "$@"`
		cmd := exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c", script, "sh",
			rootfs, mnt, vol, conf, resolv}, args...)...)
		cmd.Env = append(slices.Clone(config.Env), coreDNSEnv...)
		return cmd
	}

	took := serve(t, pod(append(config.Entrypoint, config.Cmd...)...), l, c, filepath.Join(vol, "querylog.db"))
	t.Logf("SIGTERM to exit: %s", took.Round(100*time.Millisecond))

	out, err := pod("/querylog", "stats", "--db", "/var/lib/querylog/querylog.db", "--json").CombinedOutput()
	if err != nil {
		t.Fatalf("the image's querylog stats: %v\n%s", err, out)
	}
	var stats struct {
		Schema int   `json:"schema"`
		Rows   int64 `json:"rows"`
	}
	if err := json.Unmarshal(out, &stats); err != nil {
		t.Fatalf("querylog stats --json: %v\n%s", err, out)
	}
	if stats.Schema == 0 || stats.Rows < 4 {
		t.Errorf("querylog stats: %s, want the 4 queries' rows (and the loop plugin's probe)", out)
	}
	// Every file querylog made belongs to the CoreDNS user.
	entries, err := os.ReadDir(vol)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.Sys().(*syscall.Stat_t).Uid != 65532 {
			t.Errorf("%s is owned by UID %d, want 65532", e.Name(), fi.Sys().(*syscall.Stat_t).Uid)
		}
	}
}

// checkRootfs checks what the image holds: the two binaries, static (no ELF interpreter, so
// they need no libc), the CA bundle, the log folder owned by 65532 and private, and no shell.
func checkRootfs(t *testing.T, rootfs string) {
	t.Helper()
	for _, bin := range []string{"coredns", "querylog"} {
		f, err := elf.Open(filepath.Join(rootfs, bin))
		if err != nil {
			t.Fatalf("/%s: %v", bin, err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("/%s is dynamically linked", bin)
			}
		}
		f.Close()
	}
	if fi, err := os.Stat(filepath.Join(rootfs, "etc/ssl/certs/ca-certificates.crt")); err != nil || fi.Size() == 0 {
		t.Errorf("no CA bundle: %v", err)
	}
	fi, err := os.Stat(filepath.Join(rootfs, "var/lib/querylog"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 65532 || st.Gid != 65532 || fi.Mode().Perm() != 0o750 {
		t.Errorf("/var/lib/querylog: %v owned by %d:%d, want 0750 and 65532:65532", fi.Mode(), st.Uid, st.Gid)
	}
	for _, sh := range []string{"bin/sh", "bin/busybox", "usr/bin/sh"} {
		if _, err := os.Lstat(filepath.Join(rootfs, sh)); err == nil {
			t.Errorf("the image has /%s", sh)
		}
	}
}

// run runs a command and returns its standard output, failing the test on an error.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}
