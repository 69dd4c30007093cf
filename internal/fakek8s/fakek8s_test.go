package fakek8s

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/querylog/querylog/internal/testutil"
)

// TestInformers runs client-go informers against the fake, configured as CoreDNS's kubernetes
// plugin configures its client (kubeconfig, protobuf content type, watch-list on by default):
// the declared objects sync, and Apply and Delete while running reach the caches.
func TestInformers(t *testing.T) {
	t.Parallel()
	s := Start(t,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
			Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.10"}},
		&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "default",
			Labels: map[string]string{discoveryv1.LabelServiceName: "web"}}, AddressType: discoveryv1.AddressTypeIPv4},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "client", Namespace: "default"},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "127.0.0.2"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "done", Namespace: "default"},
			Status: corev1.PodStatus{Phase: corev1.PodSucceeded, PodIP: "127.0.0.3"}},
	)
	cfg, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	client := kubernetes.NewForConfigOrDie(cfg)

	ctx, cancel := context.WithTimeout(context.Background(), testutil.Patience)
	defer cancel()
	f := informers.NewSharedInformerFactoryWithOptions(client, time.Hour,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = "status.phase!=Succeeded" }))
	svcs := f.Core().V1().Services().Informer()
	pods := f.Core().V1().Pods().Informer()
	slices := f.Discovery().V1().EndpointSlices().Informer()
	nss := f.Core().V1().Namespaces().Informer()
	f.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), svcs.HasSynced, pods.HasSynced, slices.HasSynced, nss.HasSynced) {
		t.Fatal("caches did not sync")
	}
	has := func(inf cache.SharedIndexInformer, key string) func() bool {
		return func() bool { _, ok, _ := inf.GetStore().GetByKey(key); return ok }
	}
	for _, c := range []struct {
		inf cache.SharedIndexInformer
		key string
	}{{svcs, "default/web"}, {slices, "default/web-1"}, {pods, "default/client"}, {nss, "default"}} {
		if !has(c.inf, c.key)() {
			t.Errorf("%s not in the cache after sync", c.key)
		}
	}
	if has(pods, "default/done")() {
		t.Error("the field selector status.phase!=Succeeded did not exclude pod default/done")
	}

	db := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "default"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.11"}}
	s.Apply(db)
	testutil.WaitFor(t, time.Second, "service default/db in the informer cache", has(svcs, "default/db"))
	s.Delete(db)
	testutil.WaitFor(t, time.Second, "service default/db gone from the informer cache", func() bool { return !has(svcs, "default/db")() })
}
