"""From records to the report: aggregation into one tidy table, markdown tables, figures, the claims
check and the published reference numbers. Reads records (`dcpclip.records`) and DVCLive curves only."""
