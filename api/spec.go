package api

import (
	"cmp"
	_ "embed"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

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

// spec is the merged OpenAPI document. Not safe for concurrent use; Server
// guards it.
type spec struct {
	doc map[string]any
}

func parseBaseSpec() (*spec, error) {
	var doc map[string]any
	if err := yaml.Unmarshal(baseSpec, &doc); err != nil {
		return nil, fmt.Errorf("parse base spec: %w", err)
	}
	doc, _ = normalise(doc).(map[string]any)
	return &spec{doc: doc}, nil
}

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

// merge adds fragment's paths, components and tags to the document. It is
// atomic: on error nothing is changed.
func (s *spec) merge(fragment []byte) error {
	var frag map[string]any
	if err := yaml.Unmarshal(fragment, &frag); err != nil {
		return fmt.Errorf("parse fragment: %w", err)
	}
	frag, _ = normalise(frag).(map[string]any)
	if len(frag) == 0 {
		return errors.New("empty fragment")
	}
	for k := range frag {
		switch k {
		case "paths", "components", "tags", "openapi", "info":
		default:
			return fmt.Errorf("fragment has top-level key %q; only paths, components and tags are merged", k)
		}
	}
	if v, ok := frag["openapi"]; ok {
		if vs, _ := v.(string); !strings.HasPrefix(vs, "3.0.") {
			return fmt.Errorf("fragment is openapi %v, want 3.0.x", v)
		}
	}

	var errs []error
	paths := s.section("paths")
	fragPaths, err := asMap(frag["paths"], "paths")
	if err != nil {
		return err
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

	comps := s.section("components")
	fragComps, err := asMap(frag["components"], "components")
	if err != nil {
		return err
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

	tags, _ := s.doc["tags"].([]any)
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
		return errors.Join(sortErrors(errs)...)
	}
	for p, item := range newPaths {
		paths[p] = item
	}
	for sec, defs := range newComps {
		comps[sec] = defs
	}
	if len(newTags) > 0 {
		s.doc["tags"] = newTags
	}
	return nil
}

// section returns the top-level map key, creating it if needed.
func (s *spec) section(key string) map[string]any {
	m, ok := s.doc[key].(map[string]any)
	if !ok {
		m = map[string]any{}
		s.doc[key] = m
	}
	return m
}

// operations returns the documented operations keyed "METHOD path" with
// their operation objects.
func (s *spec) operations() map[Route]map[string]any {
	ops := map[Route]map[string]any{}
	paths, _ := s.doc["paths"].(map[string]any)
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
func (s *spec) danglingRefs() []string {
	var bad []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if ref, ok := x.(string); ok && k == "$ref" {
					if !s.resolves(ref) {
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
	walk(s.doc)
	slices.Sort(bad)
	return slices.Compact(bad)
}

func (s *spec) resolves(ref string) bool {
	rest, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return true // external references are not checked
	}
	var cur any = s.doc
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

func (s *spec) marshal() ([]byte, error) {
	return yaml.Marshal(s.doc)
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
