"""Paper trading: risk rules, the virtual exchange, the backtrader decision strategy and backtests."""
