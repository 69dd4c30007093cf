package fakek8s

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/querylog/querylog/internal/testutil"
)

// TestInformers runs client-go informers against the fake, configured as CoreDNS's kubernetes
// plugin configures its client (kubeconfig, protobuf content type, watch-list on by default):
// the declared objects sync through watch-list requests, the pod field selector excludes a
// finished pod, and Apply and Delete while running reach the caches.
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
	// Informers built as controller.go in CoreDNS's kubernetes plugin builds them (not through
	// client-go/informers, which would compile every API group's informers into this test).
	informer := func(obj runtime.Object, list func(context.Context, metav1.ListOptions) (runtime.Object, error),
		watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error)) cache.SharedIndexInformer {
		lw := cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{ListWithContextFunc: list, WatchFuncWithContext: watchFn}, client)
		inf := cache.NewSharedIndexInformer(lw, obj, 0, cache.Indexers{})
		go inf.RunWithContext(ctx)
		return inf
	}
	running := func(o *metav1.ListOptions) { o.FieldSelector = "status.phase!=Succeeded,status.phase!=Failed" }
	svcs := informer(&corev1.Service{},
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return client.CoreV1().Services("").List(ctx, o)
		},
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return client.CoreV1().Services("").Watch(ctx, o)
		})
	pods := informer(&corev1.Pod{},
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			running(&o)
			return client.CoreV1().Pods("").List(ctx, o)
		},
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			running(&o)
			return client.CoreV1().Pods("").Watch(ctx, o)
		})
	slices := informer(&discoveryv1.EndpointSlice{},
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return client.DiscoveryV1().EndpointSlices("").List(ctx, o)
		},
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return client.DiscoveryV1().EndpointSlices("").Watch(ctx, o)
		})
	nss := informer(&corev1.Namespace{},
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return client.CoreV1().Namespaces().List(ctx, o)
		},
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return client.CoreV1().Namespaces().Watch(ctx, o)
		})
	if !cache.WaitForCacheSync(ctx.Done(), svcs.HasSynced, pods.HasSynced, slices.HasSynced, nss.HasSynced) {
		t.Fatal("caches did not sync")
	}
	if n := s.watchLists.Load(); n < 4 {
		t.Errorf("%d watch-list requests (sendInitialEvents=true), want 4: client-go took another path", n)
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
