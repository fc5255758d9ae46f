"""The fetch layer: the fetcher's steps over one aiohttp transport, and what each step needs."""
