"""Rules of the stock market the desk follows: exchange hours and bar timeframes."""
