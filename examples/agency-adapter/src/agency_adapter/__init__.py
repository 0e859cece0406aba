"""An example agency adapter: the land registry's back office answering Liên Thông's assignments."""
