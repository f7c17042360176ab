package api

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func noop(http.ResponseWriter, *http.Request) {}

const friendsFragment = `
openapi: 3.0.3
tags:
  - name: friends
paths:
  /api/v1/friends:
    get:
      operationId: listFriends
      tags: [friends]
      responses:
        "200":
          description: All friends.
          content:
            application/json:
              schema:
                type: array
                items:
                  $ref: "#/components/schemas/Friend"
        "401":
          $ref: "#/components/responses/Unauthorized"
  /api/v1/friends/{id}:
    parameters:
      - name: id
        in: path
        required: true
        schema:
          type: string
    get:
      operationId: getFriend
      tags: [friends]
      responses:
        200:
          description: One friend.
          content:
            application/json:
              schema:
                $ref: "#/components/schemas/Friend"
        "404":
          $ref: "#/components/responses/NotFound"
components:
  schemas:
    Friend:
      type: object
      required: [id]
      properties:
        id:
          type: string
`

func TestBuiltinSpecMatchesBuiltinRoutes(t *testing.T) {
	s := New(Options{Token: testToken})
	if err := s.CheckSpec(); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(s.Spec(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc["openapi"] != "3.0.3" {
		t.Fatalf("openapi = %v", doc["openapi"])
	}
	info, _ := doc["info"].(map[string]any)
	if info["title"] != "Madang local API" {
		t.Fatalf("title = %v", info["title"])
	}
	for _, want := range []string{"bearer:", "Error:", "/api/v1/events:", "/healthz:", "/metrics:", "/api/v1/openapi.yaml:"} {
		if !strings.Contains(string(s.Spec()), want) {
			t.Errorf("spec lacks %q", want)
		}
	}
	got := fmt.Sprint(s.Routes())
	want := "[GET /api/v1/events GET /api/v1/openapi.yaml GET /healthz GET /metrics]"
	if got != want {
		t.Fatalf("Routes = %s, want %s", got, want)
	}
}

func TestAddSpecMergesAndCheckSpecPasses(t *testing.T) {
	s := New(Options{Token: testToken})
	s.Handle("GET /api/v1/friends", noop)
	s.Handle("GET /api/v1/friends/{id}", noop)
	if err := s.AddSpec([]byte(friendsFragment)); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckSpec(); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths      map[string]map[string]any `yaml:"paths"`
		Components map[string]map[string]any `yaml:"components"`
		Tags       []map[string]any          `yaml:"tags"`
	}
	if err := yaml.Unmarshal(s.Spec(), &doc); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/healthz", "/api/v1/friends", "/api/v1/friends/{id}"} {
		if doc.Paths[p] == nil {
			t.Errorf("merged spec lacks path %s", p)
		}
	}
	if doc.Components["schemas"]["Friend"] == nil || doc.Components["schemas"]["Error"] == nil {
		t.Errorf("merged schemas: %v", doc.Components["schemas"])
	}
	if doc.Components["securitySchemes"]["bearer"] == nil {
		t.Error("base securitySchemes lost")
	}
	if len(doc.Tags) != 2 {
		t.Errorf("tags = %v", doc.Tags)
	}
	// The fragment's unquoted response code (200:) is emitted as a string
	// key, as OpenAPI requires; YAML would otherwise keep it an integer.
	get, _ := doc.Paths["/api/v1/friends/{id}"]["get"].(map[string]any)
	if responses, ok := get["responses"].(map[string]any); !ok || responses["200"] == nil {
		t.Errorf("responses = %#v, want string keys", get["responses"])
	}
	// The served document is the merged one.
	rec := do(t, s.Handler(), "GET", "/api/v1/openapi.yaml", "")
	if !strings.Contains(rec.Body.String(), "listFriends") {
		t.Fatal("served spec is not the merged one")
	}
}

func TestAddSpecDuplicatesAndConflicts(t *testing.T) {
	s := New(Options{Token: testToken})
	if err := s.AddSpec([]byte(friendsFragment)); err != nil {
		t.Fatal(err)
	}
	before := string(s.Spec())

	dup := `
paths:
  /api/v1/friends/{id}:
    delete:
      responses: {"204": {description: gone}}
    get:
      responses: {"200": {description: again}}
components:
  schemas:
    Unrelated: {type: string}
`
	err := s.AddSpec([]byte(dup))
	if err == nil || !strings.Contains(err.Error(), "GET /api/v1/friends/{id} is already documented") {
		t.Fatalf("duplicate operation: err = %v", err)
	}
	if got := string(s.Spec()); got != before {
		t.Fatal("a failed AddSpec changed the document")
	}

	// The built-in routes are documented too.
	if err := s.AddSpec([]byte("paths:\n  /healthz:\n    get:\n      responses: {}\n")); err == nil {
		t.Fatal("re-documenting GET /healthz accepted")
	}

	// Identical component re-definitions are fine, different ones are not.
	same := "components:\n  schemas:\n    Friend:\n      type: object\n      required: [id]\n      properties:\n        id:\n          type: string\n"
	if err := s.AddSpec([]byte(same)); err != nil {
		t.Fatalf("identical schema: %v", err)
	}
	diff := "components:\n  schemas:\n    Friend:\n      type: string\n"
	if err := s.AddSpec([]byte(diff)); err == nil || !strings.Contains(err.Error(), "components.schemas.Friend") {
		t.Fatalf("conflicting schema: err = %v", err)
	}

	// A new method on a documented path merges.
	if err := s.AddSpec([]byte("paths:\n  /api/v1/friends/{id}:\n    delete:\n      responses: {\"204\": {description: gone}}\n")); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(s.Spec()), "delete:") {
		t.Fatal("delete not merged")
	}

	for name, frag := range map[string]string{
		"invalid yaml":      "paths: [",
		"empty":             "",
		"top-level key":     "servers: []\n",
		"not openapi 3.0":   "openapi: 3.1.0\npaths: {}\n",
		"relative path":     "paths:\n  api/x:\n    get: {responses: {}}\n",
		"paths not a map":   "paths: [1]\n",
		"unknown section":   "components:\n  widgets:\n    A: {}\n",
		"unknown path key":  "paths:\n  /x:\n    fetch: {}\n",
		"operation not map": "paths:\n  /x:\n    get: 1\n",
		"empty path item":   "paths:\n  /x:\n",
		"tag without name":  "tags:\n  - description: x\n",
	} {
		if err := s.AddSpec([]byte(frag)); err == nil {
			t.Errorf("%s: AddSpec accepted %q", name, frag)
		}
	}
}

func TestCheckSpecReportsMismatches(t *testing.T) {
	s := New(Options{Token: testToken})
	s.Handle("GET /api/v1/friends", noop)
	s.Handle("POST /api/v1/undocumented/{id...}", noop)
	s.HandlePublic("GET /api/v1/open", noop)
	s.Handle("GET /api/v1/closed", noop)
	frag := friendsFragment + `
  responses:
    Mine:
      $ref: "#/components/schemas/Missing"
`
	if err := s.AddSpec([]byte(frag)); err != nil {
		t.Fatal(err)
	}
	if err := s.AddSpec([]byte(`
paths:
  /api/v1/open:
    get:
      responses: {"200": {description: ok}}
  /api/v1/closed:
    get:
      security: []
      responses: {"200": {description: ok}}
`)); err != nil {
		t.Fatal(err)
	}
	err := s.CheckSpec()
	if err == nil {
		t.Fatal("CheckSpec passed")
	}
	for _, want := range []string{
		"POST /api/v1/undocumented/{id}: registered but not documented",
		"GET /api/v1/friends/{id}: documented in the spec but not registered",
		"GET /api/v1/open: public route must be documented with `security: []`",
		"GET /api/v1/closed: route requires the token but is documented with `security: []`",
		`$ref "#/components/schemas/Missing" does not resolve`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("CheckSpec error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "GET /api/v1/friends:") {
		t.Errorf("documented and registered route reported:\n%v", err)
	}
}

func TestPatternRoute(t *testing.T) {
	for pattern, want := range map[string]string{
		"GET /api/v1/friends/{id}":        "GET /api/v1/friends/{id}",
		"DELETE  /api/v1/files/{path...}": "DELETE /api/v1/files/{path}",
		"GET /api/v1/rooms/{$}":           "GET /api/v1/rooms/",
		"PATCH /x":                        "PATCH /x",
	} {
		rt, err := patternRoute(pattern)
		if err != nil || rt.String() != want {
			t.Errorf("patternRoute(%q) = %v, %v; want %s", pattern, rt, err, want)
		}
	}
	for _, bad := range []string{"/api/v1/x", "get /x", "FETCH /x", "GET example.com/x", "GET", ""} {
		if _, err := patternRoute(bad); err == nil {
			t.Errorf("patternRoute(%q) accepted", bad)
		}
	}
}

func TestHandlePanics(t *testing.T) {
	s := New(Options{Token: testToken})
	s.Handle("GET /api/v1/x/{id}", noop)
	for name, f := range map[string]func(){
		"duplicate":             func() { s.Handle("GET /api/v1/x/{id}", noop) },
		"duplicate public":      func() { s.HandlePublic("GET /api/v1/x/{id}", noop) },
		"duplicate other names": func() { s.Handle("GET /api/v1/x/{name}", noop) },
		"builtin":               func() { s.Handle("GET /healthz", noop) },
		"no method":             func() { s.Handle("/api/v1/y", noop) },
		"host":                  func() { s.Handle("GET localhost/api/v1/y", noop) },
		"nil handler":           func() { s.Handle("GET /api/v1/z", nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
	if err := s.CheckSpec(); err == nil || !strings.Contains(err.Error(), "GET /api/v1/x/{id}") {
		t.Fatalf("CheckSpec = %v", err)
	}
}
