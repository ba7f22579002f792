from declutr.commands import main

main()
