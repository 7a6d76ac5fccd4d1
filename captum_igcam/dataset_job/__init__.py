"""The data-set job: explain every image of a folder into shards, and read the
shards back."""
