"""Loyalty: one exact ledger per client (`ledger`), loyalty.yaml's programs (`programs`), gift certificates and
abonements (`instruments`), and what the engine decides of them for one event (`runtime`)."""
