"""The words every part shares, defined once: reporting periods (``periods``), the KPI
catalog (``kpis``), what a partner record must look like once mapped (``records``) and
UTC time in the store (``timeutil``). Imports nothing of ours, so anything may use it."""
