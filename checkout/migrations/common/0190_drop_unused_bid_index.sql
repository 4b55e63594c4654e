-- No query reads auction bids by auction: each bid is found by its key, and pruning goes by
-- age. The index only cost a write on every bid.
DROP INDEX auction_bids_by_auction;
