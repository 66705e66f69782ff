package payment_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/boxoffice/boxoffice/db/dbtest"
	"github.com/boxoffice/boxoffice/services/kafka"
	"github.com/boxoffice/boxoffice/services/payment"
	"github.com/boxoffice/boxoffice/services/payment/gateway"
)

// oneRequestEach is a processor without a batch endpoint: the sandbox, one charge a request.
type oneRequestEach struct{ gateway.Processor }

// BenchmarkChargeBatch: payment's whole work for confirmed bookings fetched together (open the
// rows, charge, record the outcomes and queue them) on durable PostgreSQL, with the sandbox
// taking the batch's charges in one request (its ChargeAll: one statement, one commit) and
// one request a charge (as the HTTP adapter does). The figure is per booking.
//
//	go test -run '^$' -bench ChargeBatch -benchtime 400x ./services/payment
func BenchmarkChargeBatch(b *testing.B) {
	for _, size := range []int{1, 10, 100} {
		for _, p := range []struct {
			name string
			wrap func(*gateway.Sandbox) gateway.Processor
		}{
			{"one request", func(s *gateway.Sandbox) gateway.Processor { return s }},
			{"a request each", func(s *gateway.Sandbox) gateway.Processor { return oneRequestEach{s} }},
		} {
			b.Run(fmt.Sprintf("batch=%d/%s", size, p.name), func(b *testing.B) {
				conn := dbtest.NewMigrated(b, nil)
				clk := &clock{at: time.Now()}
				svc := payment.NewService(conn, p.wrap(gateway.NewSandbox(conn)), nil, clk.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))
				ctx := context.Background()
				var batch []kafka.Delivery
				flush := func() {
					if len(batch) == 0 {
						return
					}
					if err := svc.HandleConfirmedBatch(ctx, batch); err != nil {
						b.Fatal(err)
					}
					batch = batch[:0]
				}
				for b.Loop() {
					d, _ := confirmation(b, "4242424242424242", clk.Now().Add(10*time.Minute))
					batch = append(batch, d)
					if len(batch) == size {
						flush()
					}
				}
				flush()
			})
		}
	}
}
