package api

import (
	"cmp"
	"crypto/sha256"
	_ "embed"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"weak"

	"gopkg.in/yaml.v3"
)

//go:embed openapi.yaml
var baseSpec []byte

// operationMethods are the OpenAPI 3.0 path item keys that are operations.
var operationMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// pathItemFields are the non-operation keys a path item may carry.
var pathItemFields = []string{"summary", "description", "parameters", "servers"}

// componentSections are the OpenAPI 3.0 components keys.
var componentSections = []string{"schemas", "responses", "parameters", "examples", "requestBodies", "headers", "securitySchemes", "links", "callbacks"}

// specDoc is one merged OpenAPI document. It is immutable once built and
// shared: every server that added the same fragments in the same order (every
// node of a process does) holds the same *specDoc, so a node costs a pointer
// rather than its own parse of the YAML. key names the document: the SHA-256
// of the base spec, then of (parent key, fragment SHA-256) for each merge.
type specDoc struct {
	key [sha256.Size]byte
	doc map[string]any

	yamlOnce sync.Once
	yaml     []byte // the marshalled document, built on the first request
}

// Parsed fragments, by the SHA-256 of their bytes, shared process-wide: the
// fragments are the features' embedded files, so there are a handful of them.
// Nothing is cached past maxCachedFragments (an unusual caller feeding
// generated fragments gets correct results, parsed every time).
var fragments = struct {
	sync.Mutex
	m map[[sha256.Size]byte]map[string]any
}{m: map[[sha256.Size]byte]map[string]any{}}

const maxCachedFragments = 256

// Merged documents by key, held weakly: a document lives as long as a server
// uses it, and the next server that merges the same fragments in the same
// order picks it up instead of building its own. Dead entries are swept when
// the map has doubled since the last sweep.
var docs = struct {
	sync.Mutex
	m     map[[sha256.Size]byte]weak.Pointer[specDoc]
	swept int
}{m: map[[sha256.Size]byte]weak.Pointer[specDoc]{}}

func lookupDoc(key [sha256.Size]byte) *specDoc {
	docs.Lock()
	defer docs.Unlock()
	return docs.m[key].Value()
}

// shareDoc records d and returns the document to use: d, or an equal one that
// another server recorded first.
func shareDoc(d *specDoc) *specDoc {
	docs.Lock()
	defer docs.Unlock()
	if old := docs.m[d.key].Value(); old != nil {
		return old
	}
	if len(docs.m) >= 2*max(docs.swept, 16) {
		for k, wp := range docs.m {
			if wp.Value() == nil {
				delete(docs.m, k)
			}
		}
		docs.swept = len(docs.m)
	}
	docs.m[d.key] = weak.Make(d)
	return d
}

// baseDoc is the built-in document (api/openapi.yaml), parsed once.
var baseDoc = sync.OnceValues(func() (*specDoc, error) {
	var doc map[string]any
	if err := yaml.Unmarshal(baseSpec, &doc); err != nil {
		return nil, fmt.Errorf("parse base spec: %w", err)
	}
	doc, _ = normalise(doc).(map[string]any)
	return &specDoc{key: sha256.Sum256(baseSpec), doc: doc}, nil
})

// normalise turns every mapping into map[string]any: YAML decodes a mapping
// with non-string keys (responses: {200: …}) as map[any]any, and OpenAPI
// keys are strings.
func normalise(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			v[k] = normalise(x)
		}
		return v
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, x := range v {
			m[fmt.Sprint(k)] = normalise(x)
		}
		return m
	case []any:
		for i, x := range v {
			v[i] = normalise(x)
		}
		return v
	default:
		return v
	}
}

// merge returns the document with fragment's paths, components and tags
// added. d is not changed (on error nothing is).
func (d *specDoc) merge(fragment []byte) (*specDoc, error) {
	sum := sha256.Sum256(fragment)
	h := sha256.New()
	h.Write(d.key[:])
	h.Write(sum[:])
	var key [sha256.Size]byte
	h.Sum(key[:0])
	if m := lookupDoc(key); m != nil {
		return m, nil
	}
	frag, err := parseFragment(fragment, sum)
	if err != nil {
		return nil, err
	}
	doc, err := mergeDoc(d.doc, frag)
	if err != nil {
		return nil, err
	}
	return shareDoc(&specDoc{key: key, doc: doc}), nil
}

// parseFragment parses and normalises a fragment and checks its top level.
// The result is shared and must not be modified.
func parseFragment(fragment []byte, sum [sha256.Size]byte) (map[string]any, error) {
	fragments.Lock()
	frag, ok := fragments.m[sum]
	fragments.Unlock()
	if ok {
		return frag, nil
	}
	if err := yaml.Unmarshal(fragment, &frag); err != nil {
		return nil, fmt.Errorf("parse fragment: %w", err)
	}
	frag, _ = normalise(frag).(map[string]any)
	if len(frag) == 0 {
		return nil, errors.New("empty fragment")
	}
	for k := range frag {
		switch k {
		case "paths", "components", "tags", "openapi", "info":
		default:
			return nil, fmt.Errorf("fragment has top-level key %q; only paths, components and tags are merged", k)
		}
	}
	if v, ok := frag["openapi"]; ok {
		if vs, _ := v.(string); !strings.HasPrefix(vs, "3.0.") {
			return nil, fmt.Errorf("fragment is openapi %v, want 3.0.x", v)
		}
	}
	fragments.Lock()
	if len(fragments.m) < maxCachedFragments {
		fragments.m[sum] = frag
	}
	fragments.Unlock()
	return frag, nil
}

// mergeDoc returns a new document: doc with frag's paths, components and tags
// added. Neither doc nor frag is modified; the result shares their unchanged
// parts.
func mergeDoc(doc, frag map[string]any) (map[string]any, error) {
	var errs []error
	paths, _ := doc["paths"].(map[string]any)
	fragPaths, err := asMap(frag["paths"], "paths")
	if err != nil {
		return nil, err
	}
	newPaths := make(map[string]map[string]any, len(fragPaths))
	for p, item := range fragPaths {
		if !strings.HasPrefix(p, "/") {
			errs = append(errs, fmt.Errorf("path %q does not start with /", p))
			continue
		}
		fragItem, err := asMap(item, "paths."+p)
		if err != nil || len(fragItem) == 0 {
			errs = append(errs, cmp.Or(err, fmt.Errorf("path %s is empty", p)))
			continue
		}
		existing, _ := paths[p].(map[string]any)
		merged := cloneMap(existing)
		for k, v := range fragItem {
			switch {
			case slices.Contains(operationMethods, k):
				if _, dup := existing[k]; dup {
					errs = append(errs, fmt.Errorf("%s %s is already documented", strings.ToUpper(k), p))
					continue
				}
				if _, err := asMap(v, "paths."+p+"."+k); err != nil {
					errs = append(errs, err)
					continue
				}
			case slices.Contains(pathItemFields, k):
				if old, dup := existing[k]; dup && !reflect.DeepEqual(old, v) {
					errs = append(errs, fmt.Errorf("path %s: %q conflicts with an earlier definition", p, k))
					continue
				}
			case strings.HasPrefix(k, "x-"):
			default:
				errs = append(errs, fmt.Errorf("path %s: unknown key %q", p, k))
				continue
			}
			merged[k] = v
		}
		newPaths[p] = merged
	}

	comps, _ := doc["components"].(map[string]any)
	fragComps, err := asMap(frag["components"], "components")
	if err != nil {
		return nil, err
	}
	newComps := make(map[string]map[string]any, len(fragComps))
	for sec, defs := range fragComps {
		if !slices.Contains(componentSections, sec) {
			errs = append(errs, fmt.Errorf("components: unknown section %q", sec))
			continue
		}
		fragDefs, err := asMap(defs, "components."+sec)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		existing, _ := comps[sec].(map[string]any)
		merged := cloneMap(existing)
		for name, def := range fragDefs {
			// Identical re-definitions are allowed so that features may
			// share a schema; different ones are a conflict.
			if old, dup := existing[name]; dup && !reflect.DeepEqual(old, def) {
				errs = append(errs, fmt.Errorf("components.%s.%s is already defined differently", sec, name))
				continue
			}
			merged[name] = def
		}
		newComps[sec] = merged
	}

	tags, _ := doc["tags"].([]any)
	fragTags, _ := frag["tags"].([]any)
	if frag["tags"] != nil && fragTags == nil {
		errs = append(errs, errors.New("tags must be a list"))
	}
	newTags := slices.Clone(tags)
	for _, t := range fragTags {
		tm, ok := t.(map[string]any)
		name, _ := tm["name"].(string)
		if !ok || name == "" {
			errs = append(errs, errors.New("tags: every tag needs a name"))
			continue
		}
		if !slices.ContainsFunc(newTags, func(o any) bool { om, _ := o.(map[string]any); return om["name"] == name }) {
			newTags = append(newTags, tm)
		}
	}

	if len(errs) > 0 {
		return nil, errors.Join(sortErrors(errs)...)
	}
	out := maps.Clone(doc)
	outPaths := cloneMap(paths)
	for p, item := range newPaths {
		outPaths[p] = item
	}
	out["paths"] = outPaths
	outComps := cloneMap(comps)
	for sec, defs := range newComps {
		outComps[sec] = defs
	}
	out["components"] = outComps
	if len(newTags) > 0 {
		out["tags"] = newTags
	}
	return out, nil
}

// operations returns the documented operations keyed "METHOD path" with
// their operation objects.
func (d *specDoc) operations() map[Route]map[string]any {
	ops := map[Route]map[string]any{}
	paths, _ := d.doc["paths"].(map[string]any)
	for p, item := range paths {
		im, _ := item.(map[string]any)
		for k, op := range im {
			if slices.Contains(operationMethods, k) {
				om, _ := op.(map[string]any)
				ops[Route{Method: strings.ToUpper(k), Path: p}] = om
			}
		}
	}
	return ops
}

// danglingRefs lists the local $ref values ("#/components/…") that do not
// resolve.
func (d *specDoc) danglingRefs() []string {
	var bad []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if ref, ok := x.(string); ok && k == "$ref" {
					if !d.resolves(ref) {
						bad = append(bad, ref)
					}
					continue
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(d.doc)
	slices.Sort(bad)
	return slices.Compact(bad)
}

func (d *specDoc) resolves(ref string) bool {
	rest, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return true // external references are not checked
	}
	var cur any = d.doc
	for _, tok := range strings.Split(rest, "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return false
		}
		if cur, ok = m[tok]; !ok {
			return false
		}
	}
	return true
}

// marshal returns the document as YAML, marshalled once per document.
func (d *specDoc) marshal() []byte {
	d.yamlOnce.Do(func() {
		b, err := yaml.Marshal(d.doc)
		if err != nil {
			// The document only holds values decoded from YAML.
			panic(fmt.Sprintf("api: marshal spec: %v", err))
		}
		d.yaml = b
	})
	return d.yaml
}

// cloneMap is a shallow copy that is never nil.
func cloneMap(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return maps.Clone(m)
}

func asMap(v any, where string) (map[string]any, error) {
	if v == nil {
		return nil, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s must be a mapping", where)
	}
	return m, nil
}

func sortErrors(errs []error) []error {
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errs
}
