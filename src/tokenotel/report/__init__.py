"""The compliance report (docs/report.md): nine sections of evidence over a period, as a
sealed HTML, PDF, JSON or CSV file."""
