package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/boxoffice/boxoffice/services/event"
)

// TestDeadLetterCommand: a message nobody can read lands on booking-movie.dlt once per group
// that reads booking-movie, with the reason; `deadletters list` shows them and `redrive` sends
// them back once (still unreadable, they are parked again).
func TestDeadLetterCommand(t *testing.T) {
	c := startAll(t)
	w := &kafkago.Writer{Addr: kafkago.TCP(c.kc.Brokers...), BatchTimeout: time.Millisecond, RequiredAcks: kafkago.RequireAll}
	defer w.Close()
	if err := w.WriteMessages(context.Background(), kafkago.Message{Topic: c.kc.Topic(event.TopicBookingMovie), Key: []byte("x"), Value: []byte("not json")}); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(env(c.kafkaEnv()))
	if err != nil {
		t.Fatal(err)
	}
	list := func() string {
		var out bytes.Buffer
		if err := runDeadLetters(context.Background(), cfg, []string{"list"}, &out); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	// booking, the notification service's contact book and the web's requests read the topic.
	eventually(t, "three dead letters", func() bool { return strings.Contains(list(), "3 dead letter(s)") })
	if out := list(); !strings.Contains(out, "booking-movie.dlt") || !strings.Contains(out, "malformed event") || !strings.Contains(out, "group booking") {
		t.Errorf("list:\n%s", out)
	}
	var out bytes.Buffer
	if err := runDeadLetters(context.Background(), cfg, []string{"redrive"}, &out); err != nil || !strings.Contains(out.String(), "re-drove 3") {
		t.Fatalf("redrive: %q %v", out.String(), err)
	}
	eventually(t, "the re-driven messages parked again", func() bool { return strings.Contains(list(), "6 dead letter(s)") })
	out.Reset()
	if err := runDeadLetters(context.Background(), cfg, []string{"redrive"}, &out); err != nil || !strings.Contains(out.String(), "re-drove 3") {
		t.Errorf("second redrive: %q %v, want only the 3 new ones", out.String(), err)
	}
	if err := runDeadLetters(context.Background(), cfg, []string{"purge"}, &out); err == nil {
		t.Error("an unknown command was accepted")
	}
}
