package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/boxoffice/boxoffice/services/booking"
	"github.com/boxoffice/boxoffice/services/kafka"
	"github.com/boxoffice/boxoffice/services/providerhttp"
	"github.com/boxoffice/boxoffice/web"
)

// Config is everything Boxoffice reads from its environment, read once at start-up. Packages
// receive what they need from it; none of them reads the environment itself.
type Config struct {
	HTTPAddr          string         // HTTP_ADDR: where the web (User Service) listens
	DatabaseURL       string         // DATABASE_URL: PostgreSQL
	KafkaBrokers      []string       // KAFKA_BROKERS: comma-separated; empty starts the embedded broker
	KafkaDataDir      string         // KAFKA_DATA_DIR: where the embedded broker keeps its log
	KafkaEmbeddedPort int            // KAFKA_EMBEDDED_PORT: the embedded broker's port; 0 picks one
	KafkaPartitions   int            // KAFKA_PARTITIONS: partitions per topic when creating topics
	KafkaReplicas     int            // KAFKA_REPLICATION_FACTOR: copies of each topic when creating topics
	KafkaNamespace    string         // KAFKA_NAMESPACE: prefix of topic and group names, to share a cluster
	WebInstance       string         // WEB_INSTANCE: names this web replica's consumer group
	OpsAddr           string         // OPS_ADDR: the internal port: health checks, and the web's /ops and /metrics without signing in
	BookingRateLimit  int            // BOOKING_RATE_LIMIT: booking requests a minute per client address and per browser session; 0 is off
	SeatsPerBuyer     int            // SEATS_PER_BUYER: seats one browser session, phone number or card may hold of one show; 0 is off
	SeatsPerAddress   int            // SEATS_PER_ADDRESS: seats bookings from one client address may hold of one show; 0 is off
	BookingShedAfter  time.Duration  // BOOKING_SHED_AFTER: Book presses get a 503 while over 100 bookings a web replica took are this overdue; 0 is off
	PprofAddr         string         // PPROF_ADDR: where to serve net/http/pprof for profiling under load; empty is off
	LoadTestCatalog   bool           // LOADTEST_CATALOG: also schedule the Load Lab theatre's big screens, for load tests
	SecureCookies     bool           // SECURE_COOKIES: cookies always Secure, for a site served over TLS by a proxy in front
	TrustedProxies    []netip.Prefix // TRUSTED_PROXIES: comma-separated addresses or CIDRs of the reverse proxies in front
	DoorKey           string         // DOOR_KEY: what door staff sign in with to admit tickets; empty: one is made and printed
	LogLevel          slog.Level     // LOG_LEVEL: debug, info, warn or error
	HoldDuration      time.Duration  // HOLD_DURATION: how long confirmed seats wait for payment
	ConsumerMaxStall  time.Duration  // CONSUMER_MAX_STALL: how long a failing message is retried before the DLT
	ConsumerReaders   int            // CONSUMER_READERS: members each consumer group runs in this process
	ConsumerOneByOne  bool           // CONSUMER_ONE_BY_ONE: every event to its ordinary handler, no batch handlers
	OutboxDrainOnly   bool           // OUTBOX_DRAIN_ONLY: relays publish only what they take from their tables, no fast lane
	Payment           Provider       // PAYMENT_PROVIDER, PAYMENT_API_URL, PAYMENT_API_KEY
	SMS               Provider       // SMS_PROVIDER, SMS_API_URL, SMS_API_KEY

	RequestBodyTimeout time.Duration // REQUEST_BODY_TIMEOUT: how long a request has to send its body
	StreamsPerAddress  int           // STREAMS_PER_ADDRESS: event streams open at once from one client address; 0 is no cap
	StreamsMax         int           // STREAMS_MAX: event streams open at once on a web replica; 0 is no cap
}

// Provider chooses an outside service: the built-in sandbox, or a real one over HTTP.
type Provider struct {
	Kind   string // "sandbox" or "http"
	URL    string
	APIKey string
}

// Provider kinds.
const (
	ProviderSandbox = "sandbox"
	ProviderHTTP    = "http"
)

// namespacePattern keeps a namespace to characters Kafka allows in topic names, without the '.'
// that separates it from the topic.
var namespacePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{0,40}$`)

// KafkaCluster is where Kafka traffic goes; no brokers means the embedded one, to be started.
func (c Config) KafkaCluster() kafka.Cluster {
	return kafka.Cluster{Brokers: c.KafkaBrokers, Namespace: c.KafkaNamespace}
}

func (c Config) topicSpec() kafka.TopicSpec {
	return kafka.TopicSpec{Partitions: c.KafkaPartitions, ReplicationFactor: c.KafkaReplicas}
}

// DefaultDatabaseURL is the private cluster that scripts/postgres.sh starts.
const DefaultDatabaseURL = "postgres://boxoffice:boxoffice@127.0.0.1:55432/boxoffice?sslmode=disable"

// LoadConfig reads the configuration through getenv (os.Getenv in main, a map in tests),
// applying defaults, and validates it. Every error names the variable at fault.
func LoadConfig(getenv func(string) string) (Config, error) {
	get := func(key, def string) string {
		if v := strings.TrimSpace(getenv(key)); v != "" {
			return v
		}
		return def
	}
	var errs []error
	cfg := Config{
		HTTPAddr:     get("HTTP_ADDR", "127.0.0.1:8080"),
		DatabaseURL:  get("DATABASE_URL", DefaultDatabaseURL),
		KafkaDataDir: get("KAFKA_DATA_DIR", ".data/kafka"),
		WebInstance:  get("WEB_INSTANCE", "web"),
		OpsAddr:      get("OPS_ADDR", ""),
		DoorKey:      get("DOOR_KEY", ""),
		PprofAddr:    get("PPROF_ADDR", ""),
	}
	for _, raw := range strings.Split(getenv("TRUSTED_PROXIES"), ",") {
		if raw = strings.TrimSpace(raw); raw == "" {
			continue
		}
		prefix, err := netip.ParsePrefix(raw)
		if err != nil {
			addr, aerr := netip.ParseAddr(raw)
			if aerr != nil {
				errs = append(errs, fmt.Errorf("TRUSTED_PROXIES: %q is not an address or a CIDR like 10.0.0.0/8", raw))
				continue
			}
			prefix = netip.PrefixFrom(addr, addr.BitLen())
		}
		cfg.TrustedProxies = append(cfg.TrustedProxies, prefix.Masked())
	}
	if cfg.DoorKey != "" && len(cfg.DoorKey) < 12 {
		errs = append(errs, fmt.Errorf("DOOR_KEY: at least 12 characters, or leave it empty for one to be made"))
	}
	for _, b := range strings.Split(getenv("KAFKA_BROKERS"), ",") {
		if b = strings.TrimSpace(b); b != "" {
			cfg.KafkaBrokers = append(cfg.KafkaBrokers, b)
		}
	}
	intVar := func(key, def string, lo, hi int) int {
		raw := get(key, def)
		n, err := strconv.Atoi(raw)
		if err != nil || n < lo || n > hi {
			errs = append(errs, fmt.Errorf("%s=%q: want a whole number from %d to %d", key, raw, lo, hi))
		}
		return n
	}
	cfg.KafkaPartitions = intVar("KAFKA_PARTITIONS", "6", 1, 1000)
	cfg.KafkaEmbeddedPort = intVar("KAFKA_EMBEDDED_PORT", "0", 0, 65535)
	cfg.ConsumerReaders = intVar("CONSUMER_READERS", "3", 1, 64)
	cfg.KafkaReplicas = intVar("KAFKA_REPLICATION_FACTOR", "1", 1, 7)
	cfg.BookingRateLimit = intVar("BOOKING_RATE_LIMIT", "30", 0, 1_000_000)
	cfg.SeatsPerBuyer = intVar("SEATS_PER_BUYER", strconv.Itoa(booking.DefaultSeatsPerBuyer), 0, 100_000)
	cfg.SeatsPerAddress = intVar("SEATS_PER_ADDRESS", strconv.Itoa(booking.DefaultSeatsPerAddress), 0, 100_000)
	cfg.StreamsPerAddress = intVar("STREAMS_PER_ADDRESS", "20", 0, 1_000_000)
	cfg.StreamsMax = intVar("STREAMS_MAX", "20000", 0, 10_000_000)
	boolVar := func(key string) bool {
		raw := get(key, "false")
		b, err := strconv.ParseBool(raw)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: want true or false", key, raw))
		}
		return b
	}
	cfg.SecureCookies = boolVar("SECURE_COOKIES")
	cfg.LoadTestCatalog = boolVar("LOADTEST_CATALOG")
	cfg.ConsumerOneByOne = boolVar("CONSUMER_ONE_BY_ONE")
	cfg.OutboxDrainOnly = boolVar("OUTBOX_DRAIN_ONLY")
	cfg.KafkaNamespace = get("KAFKA_NAMESPACE", "")
	if !namespacePattern.MatchString(cfg.KafkaNamespace) {
		errs = append(errs, fmt.Errorf("KAFKA_NAMESPACE=%q: letters, digits, '-' and '_' only, at most 40", cfg.KafkaNamespace))
	}
	durationVar := func(key, def string, lo, hi time.Duration) time.Duration {
		raw := get(key, def)
		d, err := time.ParseDuration(raw)
		if err != nil || d < lo || d > hi {
			errs = append(errs, fmt.Errorf("%s=%q: want a duration from %s to %s, like %s", key, raw, lo, hi, def))
		}
		return d
	}
	// At most 2 h: a late charge is settled by asking the processor again with the same
	// idempotency key, which processors remember for a day or so.
	cfg.HoldDuration = durationVar("HOLD_DURATION", "10m", time.Second, 2*time.Hour)
	cfg.ConsumerMaxStall = durationVar("CONSUMER_MAX_STALL", "10m", time.Second, 24*time.Hour)
	cfg.BookingShedAfter = durationVar("BOOKING_SHED_AFTER", web.DefaultShedAfter.String(), 0, time.Hour)
	cfg.RequestBodyTimeout = durationVar("REQUEST_BODY_TIMEOUT", "10s", time.Second, 10*time.Minute)

	if _, _, err := net.SplitHostPort(cfg.OpsAddr); cfg.OpsAddr != "" && err != nil {
		errs = append(errs, fmt.Errorf("OPS_ADDR=%q: want host:port, like 127.0.0.1:9100", cfg.OpsAddr))
	}
	if _, _, err := net.SplitHostPort(cfg.HTTPAddr); err != nil {
		errs = append(errs, fmt.Errorf("HTTP_ADDR=%q: want host:port, like 127.0.0.1:8080", cfg.HTTPAddr))
	}
	if u, err := url.Parse(cfg.DatabaseURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		errs = append(errs, fmt.Errorf("DATABASE_URL: want postgres://user:password@host:port/db?sslmode=disable"))
	}
	for _, b := range cfg.KafkaBrokers {
		if _, port, err := net.SplitHostPort(b); err != nil || port == "" {
			errs = append(errs, fmt.Errorf("KAFKA_BROKERS: %q is not host:port", b))
		}
	}
	if err := cfg.LogLevel.UnmarshalText([]byte(get("LOG_LEVEL", "info"))); err != nil {
		errs = append(errs, fmt.Errorf("LOG_LEVEL=%q: want debug, info, warn or error", getenv("LOG_LEVEL")))
	}
	provider := func(prefix string) Provider {
		p := Provider{Kind: get(prefix+"_PROVIDER", ProviderSandbox), URL: get(prefix+"_API_URL", ""), APIKey: get(prefix+"_API_KEY", "")}
		switch p.Kind {
		case ProviderSandbox:
		case ProviderHTTP:
			if _, err := providerhttp.ParseBaseURL(p.URL); err != nil {
				errs = append(errs, fmt.Errorf("%s_API_URL: %w (needed when %s_PROVIDER=http)", prefix, err, prefix))
			}
			if p.APIKey == "" {
				errs = append(errs, fmt.Errorf("%s_API_KEY: required when %s_PROVIDER=http", prefix, prefix))
			}
		default:
			errs = append(errs, fmt.Errorf("%s_PROVIDER=%q: want sandbox or http", prefix, p.Kind))
		}
		return p
	}
	cfg.Payment, cfg.SMS = provider("PAYMENT"), provider("SMS")
	if strings.ContainsAny(cfg.WebInstance, " /\t") {
		errs = append(errs, fmt.Errorf("WEB_INSTANCE=%q: no spaces or slashes", cfg.WebInstance))
	}
	return cfg, errors.Join(errs...)
}
