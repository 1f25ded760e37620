from speechpipe.cli import main

main()
