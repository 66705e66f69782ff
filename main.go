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
	target := flag.String("target", TargetAll, "what to run: "+targetList()+"; or a tool: "+TargetDeadLetters+" list|redrive, "+TargetReplay+" offsets|rewind|rebuild-web, "+TargetHealth+" URL, "+TargetDoorKey+", "+TargetLoadTest+" [-scenario steady|ramp|hot|idle|all], "+TargetHops+" [debug log]")
	flag.Parse()

	cfg, err := LoadConfig(os.Getenv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "boxoffice: configuration:\n%v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	args := flag.Args()
	if *target == TargetAll && len(args) > 0 && (args[0] == TargetDeadLetters || args[0] == TargetReplay || args[0] == TargetHealth || args[0] == TargetDoorKey || args[0] == TargetLoadTest || args[0] == TargetHops) {
		*target, args = args[0], args[1:] // `boxoffice replay offsets` reads better than -target=replay
	}
	switch *target {
	case TargetDeadLetters:
		err = runDeadLetters(ctx, cfg, args, os.Stdout)
	case TargetReplay:
		err = runReplay(ctx, cfg, args, os.Stdout)
	case TargetHealth:
		err = runHealth(ctx, args, os.Stdout)
	case TargetDoorKey:
		err = runDoorKey(ctx, cfg, os.Stdout)
	case TargetLoadTest:
		err = runLoadTest(ctx, args, os.Stdout)
	case TargetHops:
		err = runHops(args, os.Stdin, os.Stdout)
	default:
		err = run(ctx, *target, cfg, os.Stdout)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "boxoffice: %v\n", err)
		os.Exit(1)
	}
}
