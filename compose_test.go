package main

import (
	"maps"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	yaml "go.yaml.in/yaml/v3"
)

type composeFile struct {
	Services map[string]struct {
		Build       any               `yaml:"build"`
		Image       string            `yaml:"image"`
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Ports       []string          `yaml:"ports"`
		Deploy      struct {
			Replicas int `yaml:"replicas"`
		} `yaml:"deploy"`
		Healthcheck struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
	} `yaml:"services"`
}

// TestDockerComposeMatchesTheBinary: no Docker engine runs here, so docker-compose.yml is checked
// against the binary instead: every Boxoffice container runs a target the binary has, with
// variables it reads and accepts, health checks on the ports it listens on, and the topology of
// `make run-cluster` (two web replicas with their own WEB_INSTANCE, two booking and two payment
// replicas, notification and ticket); Kafka's image is the version scripts/kafka.sh runs.
func TestDockerComposeMatchesTheBinary(t *testing.T) {
	raw, err := os.ReadFile("docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose composeFile
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	if _, err := LoadConfig(func(k string) string { known[k] = true; return "" }); err != nil {
		t.Fatal(err)
	}

	replicas := map[string]int{}
	webInstances := map[string]bool{}
	for name, svc := range compose.Services {
		if svc.Build == nil {
			continue // postgres, kafka
		}
		if len(svc.Command) != 1 || !strings.HasPrefix(svc.Command[0], "-target=") {
			t.Errorf("%s: command %q, want [-target=…]", name, svc.Command)
			continue
		}
		target := strings.TrimPrefix(svc.Command[0], "-target=")
		if !slices.Contains(targets, target) {
			t.Errorf("%s: target %q is not one of %s", name, target, targetList())
		}
		for k := range svc.Environment {
			if !known[k] {
				t.Errorf("%s: %s is not a variable boxoffice reads", name, k)
			}
		}
		cfg, err := LoadConfig(func(k string) string { return svc.Environment[k] })
		if err != nil {
			t.Errorf("%s: its environment is refused: %v", name, err)
			continue
		}
		replicas[target] += max(svc.Deploy.Replicas, 1)
		listening := map[string]bool{}
		if target == TargetWeb {
			webInstances[cfg.WebInstance] = true
			_, port, _ := net.SplitHostPort(cfg.HTTPAddr)
			listening[port] = true
			if len(svc.Ports) != 1 || !strings.HasSuffix(svc.Ports[0], ":"+port) {
				t.Errorf("%s: ports %q, want the host mapped to HTTP_ADDR's port %s", name, svc.Ports, port)
			}
		} else if cfg.OpsAddr != "" {
			_, port, _ := net.SplitHostPort(cfg.OpsAddr)
			listening[port] = true
		}
		if target == TargetMigrate {
			continue
		}
		check := svc.Healthcheck.Test
		if len(check) != 4 || check[0] != "CMD" || check[1] != "/boxoffice" || check[2] != TargetHealth {
			t.Errorf("%s: health check %q, want [CMD /boxoffice %s URL]", name, check, TargetHealth)
			continue
		}
		u, err := url.Parse(check[3])
		if err != nil || !listening[u.Port()] || (u.Path != "/healthz" && u.Path != "/readyz") {
			t.Errorf("%s: health check URL %q: not /healthz or /readyz on a port it listens on (%v)", name, check[3], listening)
		}
	}
	want := map[string]int{TargetMigrate: 1, TargetWeb: 2, TargetBooking: 2, TargetPayment: 2, TargetNotification: 1, TargetTicket: 1}
	if !maps.Equal(replicas, want) {
		t.Errorf("containers per target %v, want %v (the run-cluster topology)", replicas, want)
	}
	if len(webInstances) != 2 {
		t.Errorf("web replicas share a WEB_INSTANCE (%v): each must read every event in a group of its own", webInstances)
	}

	script, err := os.ReadFile("scripts/kafka.sh")
	if err != nil {
		t.Fatal(err)
	}
	version := regexp.MustCompile(`(?m)^KAFKA_VERSION=(\S+)`).FindSubmatch(script)
	if version == nil || compose.Services["kafka"].Image != "apache/kafka:"+string(version[1]) {
		t.Errorf("kafka image %q, want apache/kafka at scripts/kafka.sh's version %s", compose.Services["kafka"].Image, version[1])
	}
}
