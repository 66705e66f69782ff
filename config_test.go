package main

import (
	"strings"
	"testing"
	"time"
)

func TestLoadConfigDefaults(t *testing.T) {
	cfg, err := LoadConfig(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPAddr != "127.0.0.1:8080" || cfg.DatabaseURL != DefaultDatabaseURL || cfg.KafkaPartitions != 6 ||
		cfg.KafkaDataDir != ".data/kafka" || len(cfg.KafkaBrokers) != 0 ||
		cfg.RequestBodyTimeout != 10*time.Second || cfg.StreamsPerAddress != 20 || cfg.StreamsMax != 20000 {
		t.Errorf("defaults: %+v", cfg)
	}
	if cfg.SeatsPerBuyer != 10 || cfg.SeatsPerAddress != 20 {
		t.Errorf("seat caps %d per buyer, %d per address; want 10 (a family books) and 20", cfg.SeatsPerBuyer, cfg.SeatsPerAddress)
	}
}

func TestLoadConfigBrokers(t *testing.T) {
	cfg, err := LoadConfig(env(map[string]string{"KAFKA_BROKERS": " 127.0.0.1:9092, 127.0.0.1:9093 ,"}))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.KafkaBrokers, "|") != "127.0.0.1:9092|127.0.0.1:9093" {
		t.Errorf("brokers %q", cfg.KafkaBrokers)
	}
}

// TestLoadConfigRejectsWrongValues: a wrong value stops start-up with a message naming the
// variable, so the person running it knows what to fix.
func TestLoadConfigRejectsWrongValues(t *testing.T) {
	for _, tc := range []struct{ key, value string }{
		{"HTTP_ADDR", "8080"},
		{"DATABASE_URL", "mysql://localhost/boxoffice"},
		{"KAFKA_BROKERS", "localhost"},
		{"KAFKA_PARTITIONS", "0"},
		{"KAFKA_PARTITIONS", "six"},
		{"KAFKA_EMBEDDED_PORT", "70000"},
		{"LOG_LEVEL", "loud"},
		{"SECURE_COOKIES", "sometimes"},
		{"DOOR_KEY", "short"},
		{"TRUSTED_PROXIES", "10.0.0.0/8, proxy.internal"},
		{"WEB_INSTANCE", "web 1"},
		{"SEATS_PER_BUYER", "-1"},
		{"SEATS_PER_ADDRESS", "twenty"},
		{"PAYMENT_PROVIDER", "stripe"},
		{"PAYMENT_API_URL", "processor.example"},
		{"PAYMENT_API_URL", "http://processor.example"}, // card numbers over plain http: only to this machine
		{"SMS_PROVIDER", "carrier-pigeon"},
		{"SMS_API_KEY", ""},
		{"REQUEST_BODY_TIMEOUT", "0"},
		{"REQUEST_BODY_TIMEOUT", "ten seconds"},
		{"STREAMS_PER_ADDRESS", "-1"},
		{"STREAMS_MAX", "many"},
	} {
		t.Run(tc.key+"="+tc.value, func(t *testing.T) {
			vars := map[string]string{tc.key: tc.value}
			provider := strings.HasPrefix(tc.key, "PAYMENT_") || strings.HasPrefix(tc.key, "SMS_")
			if provider && (strings.HasSuffix(tc.key, "_URL") || strings.HasSuffix(tc.key, "_KEY")) {
				// Only checked for a real provider: name one, with the other setting valid.
				prefix := strings.SplitN(tc.key, "_", 2)[0]
				vars[prefix+"_PROVIDER"] = "http"
				if strings.HasSuffix(tc.key, "_URL") {
					vars[prefix+"_API_KEY"] = "k"
				} else {
					vars[prefix+"_API_URL"] = "https://provider.example"
				}
			}
			_, err := LoadConfig(env(vars))
			if err == nil || !strings.Contains(err.Error(), tc.key) {
				t.Errorf("err %v, want one naming %s", err, tc.key)
			}
		})
	}
}

func TestLoadConfigRealProviders(t *testing.T) {
	cfg, err := LoadConfig(env(map[string]string{
		"PAYMENT_PROVIDER": "http", "PAYMENT_API_URL": "https://processor.example", "PAYMENT_API_KEY": "sk",
		"SMS_PROVIDER": "http", "SMS_API_URL": "http://127.0.0.1:9999", "SMS_API_KEY": "key",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Payment != (Provider{ProviderHTTP, "https://processor.example", "sk"}) || cfg.SMS.Kind != ProviderHTTP {
		t.Errorf("providers: %+v %+v", cfg.Payment, cfg.SMS)
	}
	if def, _ := LoadConfig(env(nil)); def.Payment.Kind != ProviderSandbox || def.SMS.Kind != ProviderSandbox {
		t.Errorf("default providers: %+v %+v, want the sandboxes", def.Payment, def.SMS)
	}
}

func TestUnknownTargetIsRefused(t *testing.T) {
	cfg, _ := LoadConfig(func(string) string { return "" })
	err := run(t.Context(), "everything", cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "-target") {
		t.Errorf("err %v, want one naming -target", err)
	}
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoadConfigTrustedProxies(t *testing.T) {
	cfg, err := LoadConfig(env(map[string]string{"TRUSTED_PROXIES": " 10.0.0.0/8, 192.0.2.10 ,2001:db8::/32", "SECURE_COOKIES": "true"}))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range cfg.TrustedProxies {
		got = append(got, p.String())
	}
	if strings.Join(got, " ") != "10.0.0.0/8 192.0.2.10/32 2001:db8::/32" || !cfg.SecureCookies {
		t.Errorf("TRUSTED_PROXIES read as %v, SECURE_COOKIES %v", got, cfg.SecureCookies)
	}
}
