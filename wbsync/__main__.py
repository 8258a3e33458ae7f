from wbsync.cli import main

main()
