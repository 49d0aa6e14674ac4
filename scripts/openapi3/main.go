// Command openapi3 turns the Swagger 2 document protoc-gen-openapiv2
// generates (gen/openapi/jetway.swagger.json) into the OpenAPI 3 document
// the bridge serves at /openapi.json, with kin-openapi's converter, and
// adds what the generator cannot know: the paths the bridge serves outside
// the gRPC API (health, readiness, metrics, the document, the console,
// from proto/jetway/v1/openapi-http.yaml) and the text/event-stream shapes
// of the streaming routes (Subscribe, a KV watch, a redrive). scripts/generate.sh runs it; the output is generated code
// (make check-generated).
//
//	go run ./scripts/openapi3 -in gen/openapi/jetway.swagger.json -extra proto/jetway/v1/openapi-http.yaml -out gen/openapi/jetway.openapi.json
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/getkin/kin-openapi/openapi2"
	"github.com/getkin/kin-openapi/openapi2conv"
	"github.com/getkin/kin-openapi/openapi3"
	"sigs.k8s.io/yaml"
)

func main() {
	in := flag.String("in", "", "Swagger 2 document (JSON)")
	extra := flag.String("extra", "", "OpenAPI 3 fragment (YAML) whose paths are added")
	out := flag.String("out", "", "OpenAPI 3 document to write (JSON)")
	flag.Parse()
	if err := run(*in, *extra, *out); err != nil {
		fmt.Fprintln(os.Stderr, "openapi3:", err)
		os.Exit(1)
	}
}

func run(in, extra, out string) error {
	if in == "" || extra == "" || out == "" {
		return errors.New("-in, -extra and -out are required")
	}
	raw, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	var v2 openapi2.T
	if err := json.Unmarshal(raw, &v2); err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	v3, err := openapi2conv.ToV3(&v2)
	if err != nil {
		return fmt.Errorf("convert: %w", err)
	}
	v3.OpenAPI = "3.0.3"
	if err := mergeConfigNamePaths(v3); err != nil {
		return err
	}
	y, err := os.ReadFile(extra)
	if err != nil {
		return err
	}
	js, err := yaml.YAMLToJSON(y)
	if err != nil {
		return fmt.Errorf("%s: %w", extra, err)
	}
	var add openapi3.T
	if err := json.Unmarshal(js, &add); err != nil {
		return fmt.Errorf("%s: %w", extra, err)
	}
	for _, p := range sortedKeys(add.Paths.Map()) {
		if v3.Paths.Find(p) != nil {
			return fmt.Errorf("%s: path %s is already in the API", extra, p)
		}
		v3.Paths.Set(p, add.Paths.Value(p))
	}
	if add.Components != nil {
		if v3.Components == nil {
			v3.Components = &openapi3.Components{}
		}
		for name, s := range add.Components.Schemas {
			if v3.Components.Schemas == nil {
				v3.Components.Schemas = openapi3.Schemas{}
			}
			if _, dup := v3.Components.Schemas[name]; dup {
				return fmt.Errorf("%s: schema %s is already in the API", extra, name)
			}
			v3.Components.Schemas[name] = s
		}
	}
	// The streaming routes: the converter keeps only the JSON form
	// (NDJSON, the {"result"}/{"error"} chunks); add the Server-Sent
	// Events form of each (Subscribe has two bindings).
	sseOf := map[string]string{
		"MessageService_Subscribe":             "JetwayServerSentEvents",
		"MessageService_Subscribe2":            "JetwayServerSentEvents",
		"KVService_WatchBucket":                "JetwayWatchServerSentEvents",
		"DeadLetterService_RedriveDeadLetters": "JetwayRedriveServerSentEvents",
	}
	found := map[string]bool{}
	for _, p := range v3.Paths.Map() {
		for _, op := range []*openapi3.Operation{p.Get, p.Post} {
			if op == nil {
				continue
			}
			schema, ok := sseOf[op.OperationID]
			if !ok {
				continue
			}
			if r := op.Responses.Status(200); r != nil && r.Value != nil {
				r.Value.Content["text/event-stream"] = &openapi3.MediaType{Schema: openapi3.NewSchemaRef("#/components/schemas/"+schema, nil)}
				found[op.OperationID] = true
			}
		}
	}
	for id := range sseOf {
		if !found[id] {
			return fmt.Errorf("no streaming operation %s with a 200 response", id)
		}
	}
	loader := openapi3.NewLoader()
	if err := loader.ResolveRefsIn(v3, nil); err != nil {
		return fmt.Errorf("resolve references: %w", err)
	}
	if err := v3.Validate(loader.Context, openapi3.EnableExamplesValidation()); err != nil {
		return fmt.Errorf("the OpenAPI 3 document is not valid: %w", err)
	}
	b, err := json.MarshalIndent(v3, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(out, append(b, '\n'), 0o644)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// mergeConfigNamePaths moves the operations of a path templated by
// {config.X} (the Update RPCs, whose body holds the config: {config.name},
// {config.bucket}; PushService's {subscription.name}) to the same path templated by {X}: OpenAPI 3 takes
// /v1/streams/{name} and /v1/streams/{config.name} for one path, and a
// document holding both is invalid. The URL is the same; only the
// parameter's name in the document changes.
// configParam is a path parameter of the config: {config.name}.
var configParam = regexp.MustCompile(`\{((?:config|subscription)\.([a-z_]+))\}`)

func mergeConfigNamePaths(v3 *openapi3.T) error {
	for _, p := range sortedKeys(v3.Paths.Map()) {
		m := configParam.FindStringSubmatch(p)
		if m == nil {
			continue
		}
		item := v3.Paths.Value(p)
		target := strings.ReplaceAll(p, "{"+m[1]+"}", "{"+m[2]+"}")
		into := v3.Paths.Value(target)
		if into == nil {
			into = &openapi3.PathItem{}
			v3.Paths.Set(target, into)
		}
		for method, op := range item.Operations() {
			if into.GetOperation(method) != nil {
				return fmt.Errorf("%s %s: %s already has that method", method, p, target)
			}
			for _, prm := range op.Parameters {
				if prm.Value != nil && prm.Value.In == "path" && prm.Value.Name == m[1] {
					prm.Value.Name = m[2]
				}
			}
			into.SetOperation(method, op)
		}
		v3.Paths.Delete(p)
	}
	return nil
}
