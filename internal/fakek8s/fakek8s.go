// Package fakek8s is a fake Kubernetes API server for tests: HTTP on loopback, serving list and
// watch of the Namespaces, Services, EndpointSlices (discovery/v1) and Pods a test declares, so
// that CoreDNS's kubernetes plugin (client-go informers) can run against it with `endpoint URL`
// or `kubeconfig FILE`. Responses are JSON whatever the client asks for; client-go decodes by
// the response's Content-Type.
package fakek8s

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

// Server is a running fake API server. Start's stops when the test ends; New's when Close is
// called.
type Server struct {
	URL        string // http://127.0.0.1:PORT
	Kubeconfig string // a kubeconfig file pointing at URL, in a folder of its own

	t       testing.TB // nil for New's: Apply and Delete then panic on a kind the fake does not serve
	dir     string     // New's folder of Kubeconfig, removed by Close
	http    *httptest.Server
	closing chan struct{}

	mu      sync.Mutex
	objects map[string]map[string]stored // resource -> namespace/name -> object
	history []event                      // every change; history[i] has resourceVersion i+1
	changed chan struct{}                // closed and replaced on every change

	watchLists atomic.Int64 // watches with sendInitialEvents=true, for the fake's own test
}

// stored is one object as served: its JSON and what selectors match on.
type stored struct {
	namespace string
	raw       json.RawMessage
	labels    labels.Set
	fields    fields.Set
}

// event is one watch event in the history.
type event struct {
	resource string
	typ      string // ADDED, MODIFIED, DELETED
	obj      stored
}

// Start serves objs (Namespaces, Services, EndpointSlices, Pods) on a free loopback port until
// the test ends.
func Start(t testing.TB, objs ...runtime.Object) *Server {
	t.Helper()
	s := &Server{t: t}
	if err := s.start(t.TempDir(), objs); err != nil {
		t.Fatalf("fakek8s: %v", err)
	}
	t.Cleanup(s.stop)
	return s
}

// New is Start for programs that are not tests (the load harness): it serves objs until Close.
func New(objs ...runtime.Object) (*Server, error) {
	dir, err := os.MkdirTemp("", "fakek8s-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir}
	if err := s.start(dir, objs); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// Close stops a server made by New and removes its kubeconfig.
func (s *Server) Close() {
	s.stop()
	os.RemoveAll(s.dir)
}

func (s *Server) start(dir string, objs []runtime.Object) error {
	s.closing = make(chan struct{})
	s.objects = map[string]map[string]stored{}
	s.changed = make(chan struct{})
	for _, o := range objs {
		if err := s.change(o, false); err != nil {
			return err
		}
	}
	s.Kubeconfig = filepath.Join(dir, "kubeconfig")
	s.http = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.http.URL
	if err := os.WriteFile(s.Kubeconfig, []byte(kubeconfig(s.URL)), 0o600); err != nil {
		s.stop()
		return err
	}
	return nil
}

func (s *Server) stop() {
	close(s.closing) // ends open watches, so that Close does not wait for them
	s.http.CloseClientConnections()
	s.http.Close()
}

func kubeconfig(url string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: %s
users:
- name: fake
  user: {}
contexts:
- name: fake
  context:
    cluster: fake
    user: fake
current-context: fake
`, url)
}

// Apply adds obj or replaces the object of the same kind, namespace and name, and sends a watch
// event (ADDED or MODIFIED). Like Delete, it fails the test (t.Fatalf) on a kind the fake does
// not serve, so call it from the test's goroutine.
func (s *Server) Apply(obj runtime.Object) {
	s.must(s.change(obj, false))
}

// Delete removes the object of obj's kind, namespace and name, and sends a DELETED watch event.
func (s *Server) Delete(obj runtime.Object) {
	s.must(s.change(obj, true))
}

func (s *Server) must(err error) {
	switch {
	case err == nil:
	case s.t != nil:
		s.t.Helper()
		s.t.Fatalf("fakek8s: %v", err)
	default:
		panic("fakek8s: " + err.Error()) // a program's own declared objects: a bug in it
	}
}

func (s *Server) change(obj runtime.Object, remove bool) error {
	obj = obj.DeepCopyObject()
	resource, err := typeMeta(obj)
	if err != nil {
		return err
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return err
	}
	key := m.GetNamespace() + "/" + m.GetName()

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.objects[resource] == nil {
		s.objects[resource] = map[string]stored{}
	}
	_, exists := s.objects[resource][key]
	typ := "ADDED"
	switch {
	case remove && !exists:
		return fmt.Errorf("Delete of %s %s, which does not exist", resource, key)
	case remove:
		typ = "DELETED"
	case exists:
		typ = "MODIFIED"
	}
	if m.GetUID() == "" {
		m.SetUID(types.UID(fmt.Sprintf("fake-%s-%s", resource, strings.ReplaceAll(key, "/", "-"))))
	}
	if ts := m.GetCreationTimestamp(); ts.IsZero() {
		m.SetCreationTimestamp(metav1.NewTime(time.Now().Truncate(time.Second)))
	}
	m.SetResourceVersion(fmt.Sprint(len(s.history) + 1))
	raw, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	st := stored{namespace: m.GetNamespace(), raw: raw, labels: m.GetLabels(), fields: fieldSet(obj, m)}
	if remove {
		delete(s.objects[resource], key)
	} else {
		s.objects[resource][key] = st
	}
	s.history = append(s.history, event{resource: resource, typ: typ, obj: st})
	close(s.changed)
	s.changed = make(chan struct{})
	return nil
}

// typeMeta fills in obj's kind and apiVersion, which typed objects built in Go leave empty, and
// returns the API resource it belongs to.
func typeMeta(obj runtime.Object) (string, error) {
	var resource string
	var tm *metav1.TypeMeta
	switch o := obj.(type) {
	case *corev1.Namespace:
		resource, tm = "namespaces", &o.TypeMeta
		tm.APIVersion, tm.Kind = "v1", "Namespace"
	case *corev1.Service:
		resource, tm = "services", &o.TypeMeta
		tm.APIVersion, tm.Kind = "v1", "Service"
	case *corev1.Pod:
		resource, tm = "pods", &o.TypeMeta
		tm.APIVersion, tm.Kind = "v1", "Pod"
	case *discoveryv1.EndpointSlice:
		resource, tm = "endpointslices", &o.TypeMeta
		tm.APIVersion, tm.Kind = "discovery.k8s.io/v1", "EndpointSlice"
	default:
		return "", fmt.Errorf("unsupported object type %T (Namespace, Service, EndpointSlice or Pod)", obj)
	}
	return resource, nil
}

// fieldSet is what field selectors may name: metadata.name, metadata.namespace and, for Pods,
// status.phase (the kubernetes plugin's pod watch excludes finished pods by phase).
func fieldSet(obj runtime.Object, m metav1.Object) fields.Set {
	f := fields.Set{"metadata.name": m.GetName(), "metadata.namespace": m.GetNamespace()}
	if p, ok := obj.(*corev1.Pod); ok {
		f["status.phase"] = string(p.Status.Phase)
		f["spec.nodeName"] = p.Spec.NodeName
	}
	return f
}

// listKinds maps each resource to the kind of its list and its apiVersion.
var listKinds = map[string][2]string{
	"namespaces":     {"NamespaceList", "v1"},
	"services":       {"ServiceList", "v1"},
	"pods":           {"PodList", "v1"},
	"endpointslices": {"EndpointSliceList", "discovery.k8s.io/v1"},
}

// request is a parsed list or watch request.
type request struct {
	resource  string
	namespace string // "" for all namespaces
	name      string // a GET of one object
	labels    labels.Selector
	fields    fields.Selector
}

func (r request) matches(st stored) bool {
	return (r.namespace == "" || st.namespace == r.namespace) &&
		(r.name == "" || st.fields["metadata.name"] == r.name) &&
		r.labels.Matches(st.labels) && r.fields.Matches(st.fields)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/version":
		writeJSON(w, http.StatusOK, map[string]string{"major": "1", "minor": "35", "gitVersion": "v1.35.0-fake", "platform": "linux/amd64"})
		return
	case "/api":
		writeJSON(w, http.StatusOK, map[string]any{"kind": "APIVersions", "versions": []string{"v1"},
			"serverAddressByClientCIDRs": []map[string]string{{"clientCIDR": "0.0.0.0/0", "serverAddress": r.Host}}})
		return
	case "/apis":
		writeJSON(w, http.StatusOK, map[string]any{"kind": "APIGroupList", "apiVersion": "v1", "groups": []map[string]any{{
			"name":             "discovery.k8s.io",
			"versions":         []map[string]string{{"groupVersion": "discovery.k8s.io/v1", "version": "v1"}},
			"preferredVersion": map[string]string{"groupVersion": "discovery.k8s.io/v1", "version": "v1"},
		}}})
		return
	}
	req, ok := parsePath(r.URL.Path)
	if !ok || r.Method != http.MethodGet {
		writeStatus(w, http.StatusNotFound, "NotFound", fmt.Sprintf("%s %s: not served by the fake API server", r.Method, r.URL.Path))
		return
	}
	q := r.URL.Query()
	var err error
	if req.labels, err = labels.Parse(q.Get("labelSelector")); err != nil {
		writeStatus(w, http.StatusBadRequest, "BadRequest", err.Error())
		return
	}
	if req.fields, err = fields.ParseSelector(q.Get("fieldSelector")); err != nil {
		writeStatus(w, http.StatusBadRequest, "BadRequest", err.Error())
		return
	}
	switch {
	case req.name != "":
		s.get(w, req)
	case q.Get("watch") == "true" || q.Get("watch") == "1":
		s.watch(w, r, req)
	default:
		s.list(w, req)
	}
}

// parsePath understands /api/v1/RESOURCE, /api/v1/namespaces/NS/RESOURCE[/NAME],
// /api/v1/namespaces[/NAME] and the same under /apis/discovery.k8s.io/v1.
func parsePath(path string) (request, bool) {
	var rest string
	var core bool
	switch {
	case strings.HasPrefix(path, "/api/v1/"):
		rest, core = strings.TrimPrefix(path, "/api/v1/"), true
	case strings.HasPrefix(path, "/apis/discovery.k8s.io/v1/"):
		rest = strings.TrimPrefix(path, "/apis/discovery.k8s.io/v1/")
	default:
		return request{}, false
	}
	parts := strings.Split(strings.Trim(rest, "/"), "/")
	var req request
	switch {
	case len(parts) == 1:
		req.resource = parts[0]
	case len(parts) == 2 && parts[0] == "namespaces" && core:
		req.resource, req.name = "namespaces", parts[1]
	case (len(parts) == 3 || len(parts) == 4) && parts[0] == "namespaces":
		req.namespace, req.resource = parts[1], parts[2]
		if len(parts) == 4 {
			req.name = parts[3]
		}
	default:
		return request{}, false
	}
	if req.resource == "endpointslices" == core {
		return request{}, false // endpointslices only in discovery.k8s.io, the rest only in core
	}
	if _, ok := listKinds[req.resource]; !ok {
		return request{}, false
	}
	return req, true
}

func (s *Server) get(w http.ResponseWriter, req request) {
	s.mu.Lock()
	st, ok := s.objects[req.resource][req.namespace+"/"+req.name]
	s.mu.Unlock()
	if !ok {
		writeStatus(w, http.StatusNotFound, "NotFound", fmt.Sprintf("%s %q not found", req.resource, req.name))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(st.raw)
}

func (s *Server) list(w http.ResponseWriter, req request) {
	s.mu.Lock()
	items, rv := s.snapshot(req)
	s.mu.Unlock()
	kind := listKinds[req.resource]
	writeJSON(w, http.StatusOK, struct {
		Kind       string            `json:"kind"`
		APIVersion string            `json:"apiVersion"`
		Metadata   metav1.ListMeta   `json:"metadata"`
		Items      []json.RawMessage `json:"items"`
	}{kind[0], kind[1], metav1.ListMeta{ResourceVersion: rv}, items})
}

// snapshot returns the matching objects, sorted by key, and the current resourceVersion.
// The caller holds s.mu.
func (s *Server) snapshot(req request) ([]json.RawMessage, string) {
	keys := make([]string, 0, len(s.objects[req.resource]))
	for k, st := range s.objects[req.resource] {
		if req.matches(st) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	items := make([]json.RawMessage, 0, len(keys))
	for _, k := range keys {
		items = append(items, s.objects[req.resource][k].raw)
	}
	return items, fmt.Sprint(len(s.history))
}

type watchEvent struct {
	Type   string          `json:"type"`
	Object json.RawMessage `json:"object"`
}

// watch streams events as newline-separated JSON until the client goes away, timeoutSeconds
// passes or the server stops. With sendInitialEvents=true (client-go's watch-list, on by default
// since 1.35) it first sends the current objects as ADDED and a BOOKMARK marking their end; with
// resourceVersion=N it replays the changes after N; with none it starts now.
func (s *Server) watch(w http.ResponseWriter, r *http.Request, req request) {
	q := r.URL.Query()
	var timeout <-chan time.Time
	if secs := q.Get("timeoutSeconds"); secs != "" {
		var n int
		if _, err := fmt.Sscan(secs, &n); err == nil && n > 0 {
			timeout = time.After(time.Duration(n) * time.Second)
		}
	}
	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Transfer-Encoding", "chunked")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)

	s.mu.Lock()
	next := len(s.history)
	var initial []watchEvent
	rv := q.Get("resourceVersion")
	switch {
	case q.Get("sendInitialEvents") == "true" || rv == "0":
		items, now := s.snapshot(req)
		for _, it := range items {
			initial = append(initial, watchEvent{"ADDED", it})
		}
		if q.Get("sendInitialEvents") == "true" {
			s.watchLists.Add(1)
			initial = append(initial, watchEvent{"BOOKMARK", bookmark(req.resource, now)})
		}
	case rv != "":
		var n int
		if _, err := fmt.Sscan(rv, &n); err != nil || n < 0 || n > len(s.history) {
			s.mu.Unlock()
			_ = enc.Encode(watchEvent{"ERROR", statusJSON(http.StatusGone, "Expired", "too old resource version: "+rv)})
			return
		}
		next = n
	}
	s.mu.Unlock()

	for _, ev := range initial {
		if enc.Encode(ev) != nil {
			return
		}
	}
	for {
		if flusher != nil {
			flusher.Flush()
		}
		s.mu.Lock()
		evs := s.history[next:]
		changed := s.changed
		s.mu.Unlock()
		next += len(evs)
		for _, ev := range evs {
			if ev.resource != req.resource || !req.matches(ev.obj) {
				continue
			}
			if enc.Encode(watchEvent{ev.typ, ev.obj.raw}) != nil {
				return
			}
		}
		if len(evs) > 0 {
			continue // flush, then look again
		}
		select {
		case <-changed:
		case <-r.Context().Done():
			return
		case <-s.closing:
			return
		case <-timeout:
			return
		}
	}
}

// bookmark is the BOOKMARK object that ends a watch-list's initial events: an empty object of
// the resource's kind carrying the resourceVersion and the initial-events-end annotation.
func bookmark(resource, rv string) json.RawMessage {
	kind := listKinds[resource]
	raw, _ := json.Marshal(map[string]any{
		"kind":       strings.TrimSuffix(kind[0], "List"),
		"apiVersion": kind[1],
		"metadata": map[string]any{
			"resourceVersion": rv,
			"annotations":     map[string]string{metav1.InitialEventsAnnotationKey: "true"},
		},
	})
	return raw
}

func statusJSON(code int, reason, msg string) json.RawMessage {
	raw, _ := json.Marshal(metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure, Message: msg, Reason: metav1.StatusReason(reason), Code: int32(code),
	})
	return raw
}

func writeStatus(w http.ResponseWriter, code int, reason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(statusJSON(code, reason, msg))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// Namespace is a Namespace object named name.
func Namespace(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
}

// Pod is a running pod name of namespace ns at address ip: what the kubernetes plugin's `pods
// verified` needs to name a client.
func Pod(ns, name, ip string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}}}
}
