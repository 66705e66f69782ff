// Command boxoffice runs the Boxoffice cinema booking system: every part in one process by
// default, or one part per process with -target.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	target := flag.String("target", TargetAll, "what to run: "+targetList()+"; or the tool "+TargetDeadLetters+" list|redrive")
	flag.Parse()

	cfg, err := LoadConfig(os.Getenv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "boxoffice: configuration:\n%v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *target == TargetDeadLetters {
		err = runDeadLetters(ctx, cfg, flag.Args(), os.Stdout)
	} else {
		err = run(ctx, *target, cfg, os.Stdout)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "boxoffice: %v\n", err)
		os.Exit(1)
	}
}
