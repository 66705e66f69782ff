package web

import (
	"fmt"
	"strings"
	"time"
)

var currencySymbols = map[string]string{"GBP": "£", "EUR": "€", "USD": "$"}

// formatMoney writes an amount in minor units the way a till would: £13.95.
func formatMoney(cents int64, currency string) string {
	sign := ""
	if cents < 0 {
		sign, cents = "-", -cents
	}
	symbol, ok := currencySymbols[currency]
	if !ok {
		return fmt.Sprintf("%s%d.%02d %s", sign, cents/100, cents%100, currency)
	}
	return fmt.Sprintf("%s%s%d.%02d", sign, symbol, cents/100, cents%100)
}

func joinSeats(seats []string) string { return strings.Join(seats, ", ") }

func brandName(brand string) string {
	switch brand {
	case "visa":
		return "Visa"
	case "mastercard":
		return "Mastercard"
	case "amex":
		return "American Express"
	}
	return "card"
}

func formatRuntime(minutes int) string {
	if minutes < 60 {
		return fmt.Sprintf("%d min", minutes)
	}
	return fmt.Sprintf("%d h %02d min", minutes/60, minutes%60)
}

// dayLabel names a date relative to today, as cinema sites do.
func dayLabel(day, today time.Time) string {
	switch int(day.Sub(today).Hours() / 24) {
	case 0:
		return "Today"
	case 1:
		return "Tomorrow"
	}
	return day.Format("Mon 2 Jan")
}

func ago(d time.Duration) string {
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d.Minutes()))
	case d < 24*time.Hour:
		return fmt.Sprintf("%d h ago", int(d.Hours()))
	}
	return fmt.Sprintf("%d days ago", int(d.Hours()/24))
}
