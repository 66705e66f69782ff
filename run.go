package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/boxoffice/boxoffice/db"
	"github.com/boxoffice/boxoffice/services/booking"
	"github.com/boxoffice/boxoffice/services/catalog"
	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/kafka"
	"github.com/boxoffice/boxoffice/services/notification"
	"github.com/boxoffice/boxoffice/services/notification/sms"
	"github.com/boxoffice/boxoffice/services/outbox"
	"github.com/boxoffice/boxoffice/services/payment"
	"github.com/boxoffice/boxoffice/services/payment/gateway"
	"github.com/boxoffice/boxoffice/services/ticket"
	"github.com/boxoffice/boxoffice/web"
)

// The parts -target can run. "all" runs every service and the web in one process.
const (
	TargetAll          = "all"
	TargetWeb          = "web"
	TargetBooking      = "booking"
	TargetPayment      = "payment"
	TargetNotification = "notification"
	TargetTicket       = "ticket"
	TargetMigrate      = "migrate"
	TargetBroker       = "broker" // only the embedded broker, for parts run as separate processes
)

var targets = []string{TargetAll, TargetWeb, TargetBooking, TargetPayment, TargetNotification, TargetTicket, TargetMigrate, TargetBroker}

func targetList() string { return strings.Join(targets, ", ") }

// runOptions are the seams tests use; main leaves them empty.
type runOptions struct {
	listener net.Listener                       // serve on this instead of listening on cfg.HTTPAddr
	logOut   io.Writer                          // where JSON logs go (default stderr)
	started  func(url string, brokers []string) // called once everything is up
}

// run starts the chosen part and blocks until ctx is cancelled or a part fails.
func run(ctx context.Context, target string, cfg Config, stdout io.Writer) error {
	return runWith(ctx, target, cfg, stdout, runOptions{})
}

func runWith(ctx context.Context, target string, cfg Config, stdout io.Writer, opts runOptions) error {
	if !slices.Contains(targets, target) {
		return fmt.Errorf("-target=%q: want one of %s", target, targetList())
	}
	logOut := opts.logOut
	if logOut == nil {
		logOut = os.Stderr
	}
	log := slog.New(kafka.TraceHandler(slog.NewJSONHandler(logOut, &slog.HandlerOptions{Level: cfg.LogLevel}))).With("target", target)
	now := time.Now
	if target == TargetBroker {
		return runBroker(ctx, cfg, stdout, log)
	}

	conn, err := db.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("%w (DATABASE_URL; `make run` starts a local PostgreSQL)", err)
	}
	defer conn.Close()
	sizePool(conn, target, cfg.ConsumerReaders)
	if err := db.Migrate(ctx, conn, func(ctx context.Context, d *sqlx.DB) error { return catalog.Seed(ctx, d, now(), cfg.LoadTestCatalog) }); err != nil {
		return err
	}
	if target == TargetMigrate {
		fmt.Fprintln(stdout, "boxoffice: database migrated and catalog seeded")
		return nil
	}

	cluster := cfg.KafkaCluster()
	if len(cluster.Brokers) == 0 {
		broker, err := kafka.StartEmbedded(cfg.KafkaEmbeddedPort, cfg.KafkaDataDir)
		if err != nil {
			return fmt.Errorf("%w (KAFKA_DATA_DIR=%s, KAFKA_EMBEDDED_PORT=%d)", err, cfg.KafkaDataDir, cfg.KafkaEmbeddedPort)
		}
		defer broker.Close()
		cluster.Brokers = broker.Addrs()
		log.Info("embedded kafka broker started", "addrs", cluster.Brokers, "data_dir", cfg.KafkaDataDir)
	}
	if err := kafka.EnsureTopics(ctx, cluster, cfg.topicSpec(), event.Topics...); err != nil {
		return fmt.Errorf("%w (KAFKA_BROKERS)", err)
	}
	pub := kafka.NewPublisher(cluster, log)
	defer pub.Close()

	var actors []actor
	wants := func(t string) bool { return target == TargetAll || target == t }
	// Each service gets a pool of its own, as it would in a process of its own: in one process
	// sharing one pool, 10,000 buyers at the web queued the booking service's statements for
	// seconds behind their own requests. conn is the web's (and the single part's) pool.
	var closers []*sqlx.DB
	poolOf := func(part string) (*sqlx.DB, error) {
		if target != TargetAll {
			return conn, nil
		}
		pool, err := db.Open(ctx, cfg.DatabaseURL)
		if err != nil {
			return nil, err
		}
		sizePool(pool, part, cfg.ConsumerReaders)
		closers = append(closers, pool)
		return pool, nil
	}
	defer func() {
		for _, c := range closers {
			_ = c.Close()
		}
	}()
	bookingDB, paymentDB, notificationDB, ticketDB := conn, conn, conn, conn
	for part, pool := range map[string]**sqlx.DB{TargetBooking: &bookingDB, TargetPayment: &paymentDB,
		TargetNotification: &notificationDB, TargetTicket: &ticketDB} {
		if wants(part) {
			if *pool, err = poolOf(part); err != nil {
				return err
			}
		}
	}
	if wants(TargetBooking) {
		svc := booking.NewService(bookingDB, pub, cfg.HoldDuration,
			booking.SeatLimits{PerBuyer: cfg.SeatsPerBuyer, PerAddress: cfg.SeatsPerAddress}, now, log)
		actors = append(actors, consumerActor("booking", svc.Consumer(cluster, pub), cfg), relayActor("booking-outbox", svc.Relay(), cfg),
			actor{name: "booking-hold-sweeper", run: svc.RunHoldSweeper})
	}
	cards, err := paymentProvider(cfg.Payment, paymentDB)
	if err != nil {
		return err
	}
	texts, inbox, err := smsProvider(cfg.SMS, notificationDB, now)
	if err != nil {
		return err
	}
	if wants(TargetPayment) {
		svc := payment.NewService(paymentDB, cards, pub, now, log)
		actors = append(actors, consumerActor("payment", svc.Consumer(cluster, pub), cfg), relayActor("payment-outbox", svc.Relay(), cfg))
	}
	if wants(TargetNotification) {
		svc := notification.NewService(notificationDB, texts, pub, now, log)
		for i, c := range svc.Consumers(cluster, pub) {
			actors = append(actors, consumerActor(fmt.Sprintf("notification-%d", i+1), c, cfg))
		}
		actors = append(actors, relayActor("notification-outbox", svc.Relay(), cfg))
	}
	if wants(TargetTicket) {
		svc := ticket.NewService(ticketDB, pub, now, log)
		actors = append(actors, consumerActor("ticket", svc.Consumer(cluster, pub), cfg), relayActor("ticket-outbox", svc.Relay(), cfg))
	}
	// The ops port listens before the part reports itself started, so a health check made
	// right after start-up finds it.
	if cfg.OpsAddr != "" && target != TargetWeb && target != TargetAll {
		ops, err := opsActor(cfg.OpsAddr, partHealth(conn, cluster), log)
		if err != nil {
			return err
		}
		actors = append(actors, ops)
	}
	if wants(TargetWeb) {
		capabilityKey, err := web.CapabilityKey(ctx, conn)
		if err != nil {
			return err
		}
		doorKey, generatedDoorKey, err := web.DoorKey(ctx, conn, cfg.DoorKey)
		if err != nil {
			return err
		}
		server := web.NewServer(web.Deps{
			DB: conn, Publisher: pub, Tokenizer: cards, SMSInbox: inbox,
			KafkaReady:       func(ctx context.Context) error { return kafka.Ping(ctx, cluster) },
			Ops:              opsSource(cfg, conn, cluster).Snapshot,
			BookingRateLimit: cfg.BookingRateLimit,
			BookingShedAfter: cfg.BookingShedAfter,
			SecureCookies:    cfg.SecureCookies,
			DoorKey:          doorKey,
			TrustedProxies:   cfg.TrustedProxies,
			CapabilityKey:    capabilityKey,
			Now:              now, Log: log,
			RequestBodyTimeout: cfg.RequestBodyTimeout,
			StreamsPerAddress:  cfg.StreamsPerAddress,
			StreamsMax:         cfg.StreamsMax,
		})
		httpActor, url, err := webActor(cfg, opts.listener, server, log)
		if err != nil {
			return err
		}
		actors = append(actors, httpActor, scheduleActor(conn, now, cfg.LoadTestCatalog, log),
			relayActor("web-outbox", server.Relay(), cfg))
		if cfg.OpsAddr != "" {
			ops, err := opsActor(cfg.OpsAddr, server.OpsHandler(), log)
			if err != nil {
				return err
			}
			actors = append(actors, ops)
		}
		for i, c := range server.Projection().Consumers(cluster, cfg.WebInstance, pub) {
			actors = append(actors, consumerActor(fmt.Sprintf("web-projection-%d", i+1), c, cfg))
		}
		fmt.Fprintf(stdout, "Boxoffice is running at %s\n", url)
		if generatedDoorKey {
			// Made here because DOOR_KEY is not set: whoever started Boxoffice hands it to the door.
			fmt.Fprintf(stdout, "Door staff sign in at %s/tickets/door with the key %s (shown once; `boxoffice door-key` shows it again; DOOR_KEY chooses it)\n", url, doorKey)
		}
		if opts.started != nil {
			opts.started(url, cluster.Brokers)
		}
	} else if opts.started != nil {
		opts.started("", cluster.Brokers)
	}
	if cfg.PprofAddr != "" {
		profiler, err := pprofActor(cfg.PprofAddr, log)
		if err != nil {
			return err
		}
		actors = append(actors, profiler)
	}
	log.Info("boxoffice started", "brokers", cluster.Brokers, "namespace", cluster.Namespace, "partitions", cfg.KafkaPartitions)
	return runActors(ctx, actors, log)
}

// cardProcessor is both halves of a card processor: the web tokenises, payment charges and
// refunds.
type cardProcessor interface {
	gateway.Tokenizer
	gateway.Processor
}

func paymentProvider(p Provider, conn *sqlx.DB) (cardProcessor, error) {
	if p.Kind == ProviderHTTP {
		g, err := gateway.NewHTTPGateway(p.URL, p.APIKey)
		if err != nil {
			return nil, fmt.Errorf("PAYMENT_API_URL: %w", err)
		}
		return g, nil
	}
	return gateway.NewSandbox(conn), nil
}

// smsProvider returns the SMS sender and, for the sandbox only, its inbox: with a real
// provider there is no /dev/sms page listing people's texts.
func smsProvider(p Provider, conn *sqlx.DB, now func() time.Time) (sms.Sender, *sms.Sandbox, error) {
	if p.Kind == ProviderHTTP {
		s, err := sms.NewHTTPSender(p.URL, p.APIKey)
		if err != nil {
			return nil, nil, fmt.Errorf("SMS_API_URL: %w", err)
		}
		return s, nil, nil
	}
	sandbox := sms.NewSandbox(conn, now)
	return sandbox, sandbox, nil
}

// runBroker runs the embedded broker alone, with the topics created, until ctx ends: the other
// parts, each its own process, point KAFKA_BROKERS at it.
func runBroker(ctx context.Context, cfg Config, stdout io.Writer, log *slog.Logger) error {
	if len(cfg.KafkaBrokers) > 0 {
		return fmt.Errorf("-target=%s runs the embedded broker: leave KAFKA_BROKERS empty", TargetBroker)
	}
	broker, err := kafka.StartEmbedded(cfg.KafkaEmbeddedPort, cfg.KafkaDataDir)
	if err != nil {
		return fmt.Errorf("%w (KAFKA_DATA_DIR=%s, KAFKA_EMBEDDED_PORT=%d)", err, cfg.KafkaDataDir, cfg.KafkaEmbeddedPort)
	}
	defer broker.Close()
	if err := kafka.EnsureTopics(ctx, kafka.Cluster{Brokers: broker.Addrs(), Namespace: cfg.KafkaNamespace}, cfg.topicSpec(), event.Topics...); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Boxoffice's embedded Kafka broker is running at %s\n", strings.Join(broker.Addrs(), ","))
	log.Info("embedded kafka broker started", "addrs", broker.Addrs(), "data_dir", cfg.KafkaDataDir)
	<-ctx.Done()
	return nil
}

// actor is a long-running part: it runs until its context is cancelled (then drains and
// returns nil) or it fails.
type actor struct {
	name string
	run  func(ctx context.Context) error
}

// runActors runs every actor; the first to stop, for whatever reason, stops the rest — a
// process with a dead consumer must not look healthy. It waits for all of them to drain.
func runActors(ctx context.Context, actors []actor, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	for _, a := range actors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := a.run(ctx)
			if err == nil && ctx.Err() == nil {
				err = fmt.Errorf("%s stopped unexpectedly", a.name)
			}
			if err != nil {
				log.Error("part failed; stopping", "part", a.name, "err", err)
				once.Do(func() { firstErr = fmt.Errorf("%s: %w", a.name, err) })
			}
			cancel()
		}()
	}
	wg.Wait()
	return firstErr
}

// sizePool sets the database connections a part's pool may open: one for each consumer member
// that may be mid-statement, the provider calls a batch makes at once (payment's charges,
// notification's texts, when the sandbox providers keep their ledgers in the database), and a
// few for the relay and the rest; the web adds a dozen for its requests and stream reads. For
// the all-in-one process it is the web's pool: every other service has its own.
func sizePool(conn *sqlx.DB, part string, readers int) {
	size := poolSize(part, readers)
	conn.SetMaxOpenConns(size)
	conn.SetMaxIdleConns(size)
}

func poolSize(part string, readers int) int {
	const batchCalls = 8 // payment.chargesAtOnce, notification.sendsAtOnce
	switch part {
	case TargetBooking, TargetTicket:
		return 4 + readers
	case TargetPayment:
		return 4 + readers + batchCalls
	case TargetNotification:
		return 4 + 2*readers + batchCalls
	case TargetWeb, TargetAll:
		return 12 + 2*readers
	}
	return 12 + readers
}

func relayActor(name string, r *outbox.Relay, cfg Config) actor {
	if cfg.OutboxDrainOnly {
		r.DrainOnly()
	}
	return actor{name: name, run: r.Run}
}

func consumerActor(name string, c *kafka.Consumer, cfg Config) actor {
	c.SetMaxStall(cfg.ConsumerMaxStall)
	c.SetReaders(cfg.ConsumerReaders)
	if cfg.ConsumerOneByOne {
		c.HandleOneByOne()
	}
	return actor{name: name, run: c.Run}
}

// webActor serves HTTP. On shutdown it ends the SSE streams first (they would otherwise hold
// Shutdown until its timeout), then lets in-flight requests finish.
func webActor(cfg Config, ln net.Listener, server *web.Server, log *slog.Logger) (actor, string, error) {
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return actor{}, "", fmt.Errorf("listen on HTTP_ADDR=%s: %w", cfg.HTTPAddr, err)
		}
	}
	srv := &http.Server{
		Handler:           server.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	url := "http://" + ln.Addr().String()
	return actor{name: "http", run: func(ctx context.Context) error {
		return serve(ctx, srv, ln, 10*time.Second, server.CloseStreams)
	}}, url, nil
}

// serve runs srv on ln until ctx ends, then calls beforeShutdown (to end long-lived streams that
// would otherwise hold Shutdown) and lets in-flight requests finish within grace.
func serve(ctx context.Context, srv *http.Server, ln net.Listener, grace time.Duration, beforeShutdown func()) error {
	errs := make(chan error, 1)
	go func() { errs <- srv.Serve(ln) }()
	select {
	case err := <-errs:
		return fmt.Errorf("serve http on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	if beforeShutdown != nil {
		beforeShutdown()
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shut down http on %s: %w", ln.Addr(), err)
	}
	return nil
}

// opsActor serves the internal port (OPS_ADDR): the web's operations and metrics, or the health
// checks of a part without a web server, so a supervisor (a container health check, say) can
// tell it is up and reaches its dependencies.
func opsActor(addr string, handler http.Handler, log *slog.Logger) (actor, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return actor{}, fmt.Errorf("listen on OPS_ADDR=%s: %w", addr, err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	return actor{name: "ops-http", run: func(ctx context.Context) error {
		return serve(ctx, srv, ln, 5*time.Second, nil)
	}}, nil
}

// partHealth answers /healthz and /readyz for a part without a web server. Its port is internal,
// so readiness says why not.
func partHealth(conn *sqlx.DB, cluster kafka.Cluster) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		checks, status := map[string]string{"database": "ok", "kafka": "ok"}, http.StatusOK
		if err := conn.PingContext(ctx); err != nil {
			checks["database"], status = err.Error(), http.StatusServiceUnavailable
		}
		if err := kafka.Ping(ctx, cluster); err != nil {
			checks["kafka"], status = err.Error(), http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(checks)
	})
	return mux
}

// scheduleActor keeps a week of shows on sale as days go by.
func scheduleActor(conn *sqlx.DB, now func() time.Time, withLoadLab bool, log *slog.Logger) actor {
	return actor{name: "schedule", run: func(ctx context.Context) error {
		ticker := time.NewTicker(time.Hour)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-ticker.C:
				if err := catalog.Seed(ctx, conn, now(), withLoadLab); err != nil {
					log.Warn("extend the schedule", "err", err)
				}
			}
		}
	}}
}

// pprofActor serves Go's profiler on its own address (PPROF_ADDR), for profiling under load: it
// is never on the public port.
func pprofActor(addr string, log *slog.Logger) (actor, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return actor{}, fmt.Errorf("listen on PPROF_ADDR=%s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	return actor{name: "pprof", run: func(ctx context.Context) error {
		return serve(ctx, srv, ln, 5*time.Second, nil)
	}}, nil
}
