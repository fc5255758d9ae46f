"""What a source's pages say: discovery (pagination, links, sitemaps, feeds) and extraction."""
