"""Reports an owner reads every week, computed from what the store keeps (issue 15): which channel pays, where the
funnel leaks, who comes back, how the staff do. See `automator.reports.model` for what a report is."""
